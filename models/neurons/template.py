"""A hand-made face detector: the mean training face as a template, at every position and size.

Not a baseline a unit has to beat but a reference ceiling: what a detector built with the
labels (it averages the faces the videos show) and with position and size invariance written
in gets on a probe. Its response to an image is

    max over sides s, positions (y, x) of NCC(image window at (y, x), template resized to s)

with ``NCC`` the normalised cross-correlation (``cv2.TM_CCOEFF_NORMED``: mean removed, divided
by both norms), so the window's brightness and contrast do not count, computed under the
template's mask when one is given (for a face, its oval: the corners are background).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def template_responses(images: np.ndarray, template: np.ndarray, sides: list[int],
                       mask: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
    """(N, 1) float64 best NCC of ``template`` (h, w) float over ``sides`` and positions, for
    uint8 ``images`` (N, C, H, W) (channels averaged to grey); ``mask(side)`` gives the
    (side, side) float32 weights of the template's pixels (default: all)."""
    t = template.astype(np.float32)
    scaled = [(cv2.resize(t, (s, s), interpolation=cv2.INTER_LINEAR),
               None if mask is None else mask(s).astype(np.float32))
              for s in sides if s <= min(images.shape[2:])]
    out = np.empty((len(images), 1), np.float64)
    for n, im in enumerate(images):
        g = im.astype(np.float32).mean(0)
        best = -1.0
        for ts, m in scaled:
            r = cv2.matchTemplate(g, ts, cv2.TM_CCOEFF_NORMED, mask=m)
            best = max(best, float(np.nan_to_num(r, nan=-1.0, posinf=-1.0, neginf=-1.0).max()))
        out[n, 0] = best
    return out
