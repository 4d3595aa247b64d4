"""One way to put a 25x25 LFW patch (face or non-face) into an image: the demo corpus's and the
probe's shared paste path.

Everything that could tell a pasted face from a pasted non-face other than its content is made
the same for both: the patch is resized with the same filter (``cv2.INTER_LINEAR``), blended
through the same soft elliptical mask, and given the mean and spread of the region it covers::

    p' = (p - mean_a(p)) / std_a(p) * max(std_a(region), MIN_STD) + mean_a(region)

where ``mean_a`` / ``std_a`` are weighted by the mask ``a``. So the pasted square is neither
brighter nor more contrasted than what it hides, whatever the patch shows, and a classifier on
image statistics cannot pick faces out by brightness or contrast.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Contrast floor (grey levels) given to a patch over a flat region, so it stays visible.
MIN_STD = 8.0


def mask(side: int) -> np.ndarray:
    """(side, side) float32 soft elliptical mask in [0, 1] (a face's oval, soft edge)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r2 = ((xx - (side - 1) / 2) / (0.46 * side)) ** 2 + ((yy - (side - 1) / 2) / (0.5 * side)) ** 2
    return np.clip((1.0 - r2) * 4.0, 0.0, 1.0)


def _weighted_stats(x: np.ndarray, a: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of ``x`` weighted by ``a`` (same shape)."""
    w = a / max(float(a.sum()), 1e-12)
    mean = float((w * x).sum())
    return mean, float(np.sqrt(max((w * (x - mean) ** 2).sum(), 0.0)))


def box_of(cx: float, cy: float, side: int) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` of a ``side``-pixel square centred at pixel ``(cx, cy)``."""
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return y0, x0, y0 + side, x0 + side


def paste(image: np.ndarray, patch: np.ndarray, box: tuple[int, int, int, int],
          match: bool = True) -> None:
    """Blend grey ``patch`` (h, w) uint8 into ``image`` (H, W) or (H, W, 3) uint8 in place.

    ``box`` = ``(y0, x0, y1, x1)`` is a square inside the image. The patch is resized to the
    box, matched to the covered region's (mask-weighted) mean and spread on the image's grey
    level, and written grey into every channel through :func:`mask`. ``match=False`` pastes
    the patch as it is (only to measure what the matching removes).
    """
    y0, x0, y1, x1 = box
    side = y1 - y0
    h, w = image.shape[:2]
    if side != x1 - x0 or y0 < 0 or x0 < 0 or y1 > h or x1 > w or side < 2:
        raise ValueError(f"box {box} is not a square inside the {h}x{w} image")
    a = mask(side)
    region = image[y0:y1, x0:x1].astype(np.float32)
    grey = region if region.ndim == 2 else cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    p = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    p_mean, p_std = _weighted_stats(p, a)
    r_mean, r_std = _weighted_stats(grey, a)
    if match:
        p = (p - p_mean) / max(p_std, 1e-6) * max(r_std, MIN_STD) + r_mean
    if region.ndim == 3:
        a, p = a[:, :, None], p[:, :, None]
    blended = a * p + (1.0 - a) * region
    image[y0:y1, x0:x1] = np.clip(blended, 0, 255).round().astype(np.uint8)
