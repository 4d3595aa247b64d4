"""A hand-made face detector: the mean training face as a template, at every position and size.

Not a baseline a unit has to beat but a reference ceiling: what a detector built with the
labels (it averages the faces the videos show) and with position and size invariance written
in gets on a probe. Its response to an image is

    max over sides s, positions (y, x) of NCC(image window at (y, x), template resized to s)

with ``NCC`` the normalised cross-correlation (``cv2.TM_CCOEFF_NORMED``: mean removed, divided
by both norms), so the window's brightness and contrast do not count.
"""

from __future__ import annotations

import cv2
import numpy as np


def template_responses(images: np.ndarray, template: np.ndarray,
                       sides: list[int]) -> np.ndarray:
    """(N, 1) float64 best NCC of ``template`` (h, w) float over ``sides`` and positions, for
    uint8 ``images`` (N, C, H, W) (channels averaged to grey)."""
    t = template.astype(np.float32)
    scaled = [cv2.resize(t, (s, s), interpolation=cv2.INTER_LINEAR) for s in sides]
    out = np.empty((len(images), 1), np.float64)
    for n, im in enumerate(images):
        g = im.astype(np.float32).mean(0)
        out[n, 0] = max(float(cv2.matchTemplate(g, ts, cv2.TM_CCOEFF_NORMED).max())
                        for ts in scaled if ts.shape[0] <= min(g.shape))
    return out
