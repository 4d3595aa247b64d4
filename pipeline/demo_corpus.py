"""The embedded demo corpus: real video files composed from data that scikit-image ships.

Each video pans and zooms across one of scikit-image's photographs (``skimage.data``) while
faces 0-49 of its bundled LFW subset (``skimage.data.lfw_subset()``: 200 grey 25x25 crops,
0-99 faces, 100-199 non-faces) drift through half of the frames, near the middle and about as
tall as the frame (:class:`FaceLayout`), so that a top-stage unit that sees the whole frame
sees whole faces, framed as the probe frames them (small faces anywhere in a third of the frames
is ``FaceLayout(1 / 3, (0.15, 0.9), (0.1, 0.9))``). This is the "cat neuron" set-up of Le et al.
(ICML 2012) in miniature: unlabelled frames in which faces are common but not everywhere.

What the videos never show is the probe set (:func:`probe_set`): LFW-subset faces 50-99 against
its 100 non-faces and crops of :data:`HELD_OUT_PHOTOS`, photographs kept out of the videos so a
neuron cannot score by recognising background textures it was trained on.

Deterministic by seed; ten videos take a few seconds to write.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

#: Photographs used as video backgrounds.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "camera", "cat", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "cell", "colorwheel",
)
#: Photographs never used in the videos; their crops are the probe set's unseen distractors.
HELD_OUT_PHOTOS: tuple[str, ...] = ("coffee", "rocket", "clock", "brick")
#: LFW-subset indices: faces shown in the videos, faces kept for the probe, non-faces.
VIDEO_FACES = range(0, 50)
PROBE_FACES = range(50, 100)
PROBE_NON_FACES = range(100, 200)
CORPUS_JSON = "demo_corpus.json"


@dataclass(frozen=True)
class FaceLayout:
    """How faces appear in the videos.

    Attributes
    ----------
    fraction : share of the frames that show a face.
    scale : (min, max) face side as a fraction of the frame height; each appearance moves
        between two draws from this range.
    centre : (min, max) of the face centre's coordinates, as fractions of the central square
        that ingest crops (0.5 = the middle).
    """

    fraction: float = 0.5
    scale: tuple[float, float] = (0.85, 1.1)
    centre: tuple[float, float] = (0.45, 0.55)


#: Share of the frames that show a face in the default layout.
FACE_FRACTION = FaceLayout().fraction


def _photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as uint8 RGB (H, W, 3)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def _lfw() -> np.ndarray:
    """The LFW subset as uint8 (200, 25, 25)."""
    import skimage.data

    return (skimage.data.lfw_subset() * 255).round().astype(np.uint8)


def _face_segments(rng: np.random.Generator, n_frames: int, layout: FaceLayout) -> list[dict]:
    """Non-overlapping face appearances covering about ``layout.fraction`` of the frames."""
    target = int(round(layout.fraction * n_frames))
    n_seg = max(1, target // 25)
    lengths = np.full(n_seg, target // n_seg)
    lengths[: target - lengths.sum()] += 1
    gaps_total = n_frames - target
    cuts = np.sort(rng.integers(0, gaps_total + 1, n_seg))
    segments = []
    for k in range(n_seg):
        start = int(cuts[k]) + int(lengths[:k].sum())
        segments.append({
            "start": start,
            "stop": start + int(lengths[k]),
            "face": int(rng.choice(VIDEO_FACES)),
            # face side as a fraction of the frame height: small .. most of the frame
            "scale": [float(rng.uniform(*layout.scale)), float(rng.uniform(*layout.scale))],
            "xy0": [float(rng.uniform(*layout.centre)), float(rng.uniform(*layout.centre))],
            "xy1": [float(rng.uniform(*layout.centre)), float(rng.uniform(*layout.centre))],
        })
    return segments


def _paste_face(frame: np.ndarray, face: np.ndarray, cx: float, cy: float, side: int) -> None:
    """Alpha-blend a grey face, resized to ``side``, with an elliptical soft mask at (cx, cy)."""
    h, w = frame.shape[:2]
    side = max(6, min(side, h))
    patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r2 = ((xx - (side - 1) / 2) / (0.46 * side)) ** 2 + ((yy - (side - 1) / 2) / (0.5 * side)) ** 2
    alpha = np.clip((1.0 - r2) * 4.0, 0.0, 1.0)  # soft edge
    x0 = int(round(cx * w - side / 2))
    y0 = int(round(cy * h - side / 2))
    fx0, fy0 = max(0, -x0), max(0, -y0)
    x0c, y0c = max(0, x0), max(0, y0)
    x1c, y1c = min(w, x0 + side), min(h, y0 + side)
    if x1c <= x0c or y1c <= y0c:
        return
    a = alpha[fy0 : fy0 + y1c - y0c, fx0 : fx0 + x1c - x0c, None]
    p = patch[fy0 : fy0 + y1c - y0c, fx0 : fx0 + x1c - x0c, None]
    region = frame[y0c:y1c, x0c:x1c].astype(np.float32)
    frame[y0c:y1c, x0c:x1c] = (a * p + (1 - a) * region).round().astype(np.uint8)


def _camera(photo: np.ndarray, t: float, path: dict, out_w: int, out_h: int) -> np.ndarray:
    """The frame at time ``t`` in [0, 1] of a linear pan + zoom over ``photo``."""
    ph, pw = photo.shape[:2]
    zoom = path["zoom0"] + (path["zoom1"] - path["zoom0"]) * t
    # window: the largest out_w:out_h rectangle that fits, shrunk by the zoom factor
    base = min(pw / out_w, ph / out_h)
    cw, ch = out_w * base / zoom, out_h * base / zoom
    cx = path["x0"] + (path["x1"] - path["x0"]) * t
    cy = path["y0"] + (path["y1"] - path["y0"]) * t
    x = np.clip(cx * pw - cw / 2, 0, pw - cw)
    y = np.clip(cy * ph - ch / 2, 0, ph - ch)
    m = np.array([[cw / out_w, 0, x], [0, ch / out_h, y]], np.float64)
    return cv2.warpAffine(photo, m, (out_w, out_h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _open_writer(path_stem: Path, fps: float, w: int, h: int) -> tuple[cv2.VideoWriter, Path]:
    """An MP4 (mp4v) writer, or MJPG AVI where this OpenCV build cannot write MP4."""
    for fourcc, ext in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        p = path_stem.with_suffix(ext)
        tmp = p.with_name(f".{p.stem}.tmp{ext}")
        wr = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
        if wr.isOpened():
            return wr, p
        wr.release()
        tmp.unlink(missing_ok=True)
    raise RuntimeError("OpenCV cannot write MP4 or AVI video here; install opencv-python-headless")


def _paste_segment(rgb: np.ndarray, faces: np.ndarray, seg: dict, t: int) -> None:
    """Paste segment ``seg``'s face into frame ``t`` (in place), its size and centre moving
    linearly from the segment's start to its end."""
    h, w = rgb.shape[:2]
    u = (t - seg["start"]) / max(1, seg["stop"] - seg["start"] - 1)
    side = int(h * (seg["scale"][0] + (seg["scale"][1] - seg["scale"][0]) * u))
    # keep the face centre inside the central square that ingest crops
    fx = seg["xy0"][0] + (seg["xy1"][0] - seg["xy0"][0]) * u
    cx = (w - h) / (2 * w) + (h / w) * fx
    cy = seg["xy0"][1] + (seg["xy1"][1] - seg["xy0"][1]) * u
    _paste_face(rgb, faces[seg["face"]], cx, cy, side)


def write_demo_videos(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_videos: int = 10,
    size: int = 96,
    n_frames: int = 300,
    fps: float = 25.0,
    layout: FaceLayout = FaceLayout(),
) -> list[Path]:
    """Write the demo videos into ``out_dir`` and return their paths.

    Parameters
    ----------
    out_dir:
        Folder for the videos (created) and ``demo_corpus.json`` (what each video shows: photo,
        camera path, face segments with LFW index, scale and position).
    seed:
        Seeds every random choice; the same seed writes the same videos.
    n_videos, n_frames, fps:
        Corpus size: ``n_videos * n_frames`` frames in all (default 3,000).
    size:
        Frame height; frames are ``4/3 * size`` wide (landscape, as most footage), so ingest's
        centre crop and resize are exercised.
    layout:
        How often, how large and where faces appear (:class:`FaceLayout`).

    Videos already present from an earlier call with the same arguments are kept.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = size, (size * 4 // 3) // 2 * 2
    args = {"seed": seed, "n_videos": n_videos, "size": size, "n_frames": n_frames, "fps": fps,
            "faces": {k: list(v) if isinstance(v, tuple) else v
                      for k, v in asdict(layout).items()}}
    meta_path = out / CORPUS_JSON
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        paths = [out / v["file"] for v in meta.get("videos", [])]
        if meta.get("args") == args and all(p.is_file() and p.stat().st_size for p in paths):
            return paths
    rng = np.random.default_rng(seed)
    faces = _lfw()
    photos = {name: _photo(name) for name in TRAIN_PHOTOS}
    order = [TRAIN_PHOTOS[i] for i in rng.permutation(len(TRAIN_PHOTOS))]
    paths, records = [], []
    for v in range(n_videos):
        name = order[v % len(order)]
        cam = {
            "zoom0": float(rng.uniform(1.0, 2.5)), "zoom1": float(rng.uniform(1.0, 2.5)),
            "x0": float(rng.uniform(0.2, 0.8)), "x1": float(rng.uniform(0.2, 0.8)),
            "y0": float(rng.uniform(0.2, 0.8)), "y1": float(rng.uniform(0.2, 0.8)),
        }
        segments = _face_segments(rng, n_frames, layout)
        face_at = {}
        for s in segments:
            for t in range(s["start"], s["stop"]):
                face_at[t] = s
        writer, path = _open_writer(out / f"demo-{seed}-{v:02d}", fps, w, h)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        try:
            for t in range(n_frames):
                rgb = _camera(photos[name], t / max(1, n_frames - 1), cam, w, h)
                if t in face_at:
                    _paste_segment(rgb, faces, face_at[t], t)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        os.replace(tmp, path)
        paths.append(path)
        records.append({"file": path.name, "photo": name, "camera": cam, "faces": segments})
    tmp_meta = out / f".{CORPUS_JSON}.tmp"
    tmp_meta.write_text(json.dumps({"args": args, "held_out_photos": list(HELD_OUT_PHOTOS),
                                    "videos": records}, indent=1))
    os.replace(tmp_meta, meta_path)
    return paths


def probe_set(*, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The labelled probe set the demo videos never show.

    Returns
    -------
    images:
        uint8 (N, 1, size, size) grey: LFW-subset faces 50-99 (label 1), its non-faces
        100-199 (label 0), then 100 random square crops of :data:`HELD_OUT_PHOTOS` (label 0).
    labels:
        int64 (N,): 1 = face, 0 = non-face.
    """
    rng = np.random.default_rng(seed)
    lfw = _lfw()
    images, labels = [], []
    for i in [*PROBE_FACES, *PROBE_NON_FACES]:
        images.append(cv2.resize(lfw[i], (size, size), interpolation=cv2.INTER_LINEAR))
        labels.append(1 if i in PROBE_FACES else 0)
    per_photo = 100 // len(HELD_OUT_PHOTOS)
    for name in HELD_OUT_PHOTOS:
        grey = cv2.cvtColor(_photo(name), cv2.COLOR_RGB2GRAY)
        ph, pw = grey.shape
        for _ in range(per_photo):
            side = int(rng.uniform(0.2, 0.8) * min(ph, pw))
            y = int(rng.integers(0, ph - side + 1))
            x = int(rng.integers(0, pw - side + 1))
            crop = grey[y : y + side, x : x + side]
            images.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
            labels.append(0)
    x = np.stack(images)[:, None]  # (N, size, size) -> (N, 1, size, size)
    return x, np.asarray(labels, np.int64)
