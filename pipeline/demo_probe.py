"""The built-in probe: matched twins, made of what the demo videos never show.

Every probe face is one of LFW-subset faces 50-99, pasted at 4 placements (a random crop of one
of :data:`pipeline.demo_corpus.HELD_OUT_PHOTOS`, a side in the corpus's range, anywhere inside)
through the corpus's own paste path (:func:`pipeline.demo_paste.paste`). Each face image has
two matched images of the same background crop:

- its **twin** (class ``non_faces``): the same box with the non-face patch ``i + 100``
  (150-199) instead of face ``i``: same mask, resampling, brightness and contrast, so only
  the patch's content differs;
- the **bare** background (class ``backgrounds``): reported per class, not in the headline.

So the headline question, faces against their twins, cannot be answered by being a pasted
square nor by the region's brightness or contrast. Faces 50-74 and their images form the
``tune`` part (choose settings there), 75-99 the ``report`` part; ``groups`` (the face id) keep
an identity, its twins and backgrounds on the same side of any held-out split.

Images are rendered at ``render`` pixels (the demo frames' central square) and reach the model
through the frames' own decode path (:func:`pipeline.probe.builtin_probe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.demo_corpus import HELD_OUT_PHOTOS, PROBE_FACES, Layout, bundled_photo, lfw_faces
from pipeline.demo_paste import box_of, paste

CLASSES = ("faces", "non_faces", "backgrounds")
PLACEMENTS = 4
TUNE_FACES = range(50, 75)
TWIN_OFFSET = 100


@dataclass(frozen=True)
class ProbeSet:
    """``images`` uint8 (N, H, W, 3) RGB; ``labels`` (N,) index into :data:`CLASSES`;
    ``groups`` (N,) the face id each image belongs to; ``boxes`` (N, 4) ``[y0, x0, y1, x1]``
    of the pasted square (the bare background keeps its twins' box); ``parts`` (N,)
    ``"tune"`` / ``"report"``."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    boxes: np.ndarray
    parts: np.ndarray


def _background(rng: np.random.Generator, photos: list[np.ndarray], render: int):
    """A random square crop of a held-out photo (RGB), resized to ``render`` (INTER_AREA)."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    side = int(rng.uniform(0.3, 0.8) * min(ph, pw))
    y, x = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    crop = photo[y:y + side, x:x + side]
    return cv2.resize(crop, (render, render), interpolation=cv2.INTER_AREA)


def probe_set(*, render: int = 96, seed: int = 0, layout: Layout | None = None,
              match: bool = True) -> ProbeSet:
    """The matched-twin probe (600 images: 200 faces, 200 twins, 200 backgrounds), sides in
    ``layout.scale`` (default: the corpus's :class:`Layout`) of ``render``; ``match=False``
    pastes the patches without the region's mean and spread (to measure that matching)."""
    layout = layout or Layout()
    rng = np.random.default_rng(seed)
    lfw = lfw_faces()
    photos = [bundled_photo(name) for name in HELD_OUT_PHOTOS]
    images, labels, groups, boxes = [], [], [], []
    for i in PROBE_FACES:
        for _ in range(PLACEMENTS):
            bg = _background(rng, photos, render)
            side = int(round(rng.uniform(*layout.scale) * render))
            cx, cy = rng.uniform(side / 2, render - side / 2, 2)
            box = box_of(float(cx), float(cy), side)
            box = (min(max(box[0], 0), render - side), min(max(box[1], 0), render - side))
            box = (box[0], box[1], box[0] + side, box[1] + side)
            face, twin = bg.copy(), bg.copy()
            paste(face, lfw[i], box, match)
            paste(twin, lfw[i + TWIN_OFFSET], box, match)
            images += [face, twin, bg]
            labels += [0, 1, 2]
            groups += [i] * 3
            boxes += [box] * 3
    groups_a = np.asarray(groups, np.int64)
    parts = np.where(np.isin(groups_a, list(TUNE_FACES)), "tune", "report")
    return ProbeSet(np.stack(images), np.asarray(labels, np.int64), groups_a,
                    np.asarray(boxes, np.int64), parts)
