"""Invariance curves: a unit's response to its stimuli under scaling, rotation and translation.

As in Le et al. (2012, figure 4), the stimuli (e.g. a unit's top frames) are transformed and the
mean response is plotted against the transformation's parameter. Scaling and rotation are about
a centre (the unit's receptive field centre), so the unit keeps seeing the same content;
translation is horizontal, in pixels. Frames are resampled with ``grid_sample`` (bilinear,
border padding), whose ``align_corners=False`` maps pixel ``i`` to ``(2 i + 1) / W - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6, 1.8)
DEFAULT_DEGREES = tuple(range(-90, 91, 15))


def affine_about(centre: tuple[float, float], size: tuple[int, int], *, scale: float = 1.0,
                 degrees: float = 0.0, shift: float = 0.0) -> Tensor:
    """``theta`` (2, 3) for ``F.affine_grid``: content scaled by ``scale`` and rotated by
    ``degrees`` (counter-clockwise on screen) about ``centre`` = (y, x) pixels, then moved
    ``shift`` pixels right. Output point p samples the input at ``c + A (p - c) - t``,
    ``A = R(-degrees) / scale``, in normalised coordinates (x first)."""
    H, W = size
    cx, cy = (2 * centre[1] + 1) / W - 1, (2 * centre[0] + 1) / H - 1
    a = math.radians(degrees)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # screen y points down, so a counter-clockwise turn of the content is R(+a) in (x, y);
    # H/W rescale the off-diagonal terms on non-square frames.
    A = torch.tensor([[cos, -sin * H / W], [sin * W / H, cos]], dtype=torch.float64)
    c = torch.tensor([cx, cy], dtype=torch.float64)
    t = torch.tensor([2 * shift / W, 0.0], dtype=torch.float64)
    return torch.cat([A, (c - A @ c - t).unsqueeze(1)], 1)


def transform_frames(frames: Tensor, theta: Tensor) -> Tensor:
    """Resample float frames (N, C, H, W) under ``theta`` (2, 3)."""
    N = frames.shape[0]
    th = theta.to(device=frames.device, dtype=frames.dtype).expand(N, 2, 3)
    grid = F.affine_grid(th, list(frames.shape), align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def invariance_curves(
    respond: Callable[[Tensor], Tensor],
    frames: Tensor,
    centre: tuple[float, float],
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    degrees: Sequence[float] = DEFAULT_DEGREES,
    shifts: Sequence[float] | None = None,
) -> dict[str, list[list[float]]]:
    """Mean response of ``respond`` (float frames (N, C, H, W) -> (N,)) to transformed frames.

    Returns ``{"scale": [[factor, r], ...], "rotation": [[degrees, r], ...],
    "translation": [[pixels, r], ...]}``; ``shifts`` defaults to -W/4 .. W/4 in 9 steps.
    """
    H, W = frames.shape[-2:]
    if shifts is None:
        shifts = [round(W / 4 * (i / 4 - 1), 2) for i in range(9)]
    sweeps = {"scale": [(s, {"scale": s}) for s in scales],
              "rotation": [(d, {"degrees": d}) for d in degrees],
              "translation": [(p, {"shift": p}) for p in shifts]}
    moved, where = [], []
    for name, points in sweeps.items():
        for value, kwargs in points:
            moved.append(transform_frames(frames, affine_about(centre, (H, W), **kwargs)))
            where.append((name, float(value)))
    n = frames.shape[0]
    response = respond(torch.cat(moved)).view(len(moved), n).mean(1)  # one batch for all
    curves: dict[str, list[list[float]]] = {name: [] for name in sweeps}
    for (name, value), r in zip(where, response.tolist(), strict=True):
        curves[name].append([value, float(r)])
    return curves
