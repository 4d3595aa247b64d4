"""Frames and the matched twin probe for benchmarks/learner_study.py, made in memory.

Training frames: 64x64 grey crops of training photographs; a third carry a face (LFW subset
0-49), a third a non-face patch (100-149), a third nothing. A pasted patch is 25-40 px, at a
random place, resampled by the same path for faces and non-faces, and given the mean and spread
of the region it covers (so brightness, contrast and sharpness do not give a face away).

Probe: every face 50-99 at 4 placements on crops of photographs never used in training, each
against its twin: the same crop, place and size with non-face ``face_id + 100`` (150-199).
Settings are chosen on faces 50-74 and their twins (``tune``), figures reported on 75-99.

:func:`make_data` is the one entry point, so the study can switch to the shared corpus and probe
(``pipeline.demo_corpus``) by replacing it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_PHOTOS = (
    "astronaut", "camera", "cat", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "cell", "colorwheel",
)
PROBE_PHOTOS = ("coffee", "rocket", "clock", "brick")
TRAIN_FACES, TRAIN_NON_FACES = range(0, 50), range(100, 150)
PROBE_FACES = range(50, 100)  # twin of face i: non-face i + 100
TUNE_FACES = range(50, 75)
SIZE, PATCH_SIDES = 64, (25, 40)
KINDS = ("face", "non_face", "bare")


def grey_photo(name: str) -> torch.Tensor:
    """``skimage.data.<name>()`` as float grey (H, W) in [0, 1]."""
    import skimage.color
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.float64)
    elif img.dtype == np.uint8:
        img = img / 255.0
    if img.ndim == 3:
        img = skimage.color.rgb2gray(img[:, :, :3])
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))


def resize(img: torch.Tensor, side: int) -> torch.Tensor:
    """(H, W) -> (side, side), antialiased bilinear (one path for photos, faces and patches)."""
    out = F.interpolate(img[None, None], size=(side, side), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0, 0]


def random_crop(photo: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random square of side 64..min(H, W, 256) resized to 64x64."""
    H, W = photo.shape
    side = int(rng.integers(SIZE, min(H, W, 256) + 1))
    y, x = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
    return resize(photo[y : y + side, x : x + side], SIZE)


def paste(frame: torch.Tensor, patch: torch.Tensor, side: int, y: int, x: int) -> torch.Tensor:
    """``frame`` with ``patch`` resized to ``side`` at (y, x), given the covered region's mean
    and standard deviation (floored at 0.02 so a flat region still shows the patch)."""
    p = resize(patch, side)
    region = frame[y : y + side, x : x + side]
    p = (p - p.mean()) / p.std().clamp(min=1e-6)
    out = frame.clone()
    out[y : y + side, x : x + side] = (p * region.std().clamp(min=0.02) + region.mean()).clamp(0, 1)
    return out


def placement(rng: np.random.Generator) -> tuple[int, int, int]:
    """(side, y, x): a patch side in PATCH_SIDES, fully inside the frame."""
    side = int(rng.integers(PATCH_SIDES[0], PATCH_SIDES[1] + 1))
    return side, int(rng.integers(0, SIZE - side + 1)), int(rng.integers(0, SIZE - side + 1))


def training_frames(n: int, lfw: torch.Tensor, seed: int) -> tuple[torch.Tensor, list[str]]:
    """``n`` frames (n, 64, 64) and their kinds (face / non_face / bare, a third each)."""
    rng = np.random.default_rng(seed)
    photos = [grey_photo(p) for p in TRAIN_PHOTOS]
    kinds = [KINDS[i % 3] for i in rng.permutation(n)]
    frames = torch.empty(n, SIZE, SIZE)
    for i, kind in enumerate(kinds):
        frame = random_crop(photos[int(rng.integers(len(photos)))], rng)
        if kind != "bare":
            ids = TRAIN_FACES if kind == "face" else TRAIN_NON_FACES
            frame = paste(frame, lfw[int(rng.choice(ids))], *placement(rng))
        frames[i] = frame
    return frames, kinds


def twin_probe(lfw: torch.Tensor, seed: int, per_face: int = 4) -> dict:
    """Faces 50-99 (label 1) and their twins (label 0), each ``per_face`` placements.

    Returns images (400, 64, 64) and per image: label, identity (the face id, shared by the
    twin), side, centre (cy, cx), tune (identity in 50-74).
    """
    rng = np.random.default_rng(seed + 10_000)
    photos = [grey_photo(p) for p in PROBE_PHOTOS]
    images, meta = [], []
    for face in PROBE_FACES:
        for _ in range(per_face):
            bg = random_crop(photos[int(rng.integers(len(photos)))], rng)
            side, y, x = placement(rng)
            for label, idx in ((1, face), (0, face + 100)):
                images.append(paste(bg, lfw[idx], side, y, x))
                meta.append((label, face, side, y + side / 2, x + side / 2))
    m = np.array(meta, dtype=np.float64)
    return {
        "images": torch.stack(images),
        "label": m[:, 0].astype(int),
        "identity": m[:, 1].astype(int),
        "side": m[:, 2],
        "centre": m[:, 3:5],
        "tune": np.isin(m[:, 1].astype(int), list(TUNE_FACES)),
    }


def make_data(n_frames: int, seed: int = 0) -> dict:
    """Training frames and the twin probe (see the module docstring); the data seed is fixed
    across model seeds, like a corpus on disk."""
    import skimage.data

    lfw = torch.from_numpy(skimage.data.lfw_subset().astype(np.float32))  # (200, 25, 25)
    frames, kinds = training_frames(n_frames, lfw, seed)
    return {
        "frames": frames,
        "kinds": kinds,
        "probe": twin_probe(lfw, seed),
        "mean_face": lfw[list(TRAIN_FACES)].mean(0),
    }
