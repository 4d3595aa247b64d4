"""Pooling over position and over size: what makes a unit fire for a thing wherever it is and
however large (the invariance of Le et al.'s face neuron).

Over position, a window of ``k x k`` positions of one map (``k`` up to the whole map) reduces by

    rms:  sqrt(mean_w x^2)        l2:  sqrt(sum_w x^2)        max:  max_w x

(L2 pooling as in Hyvarinen et al. 2009 and Le et al. 2012; RMS is the same up to the constant
``k``, so its scale does not grow with the window.) Over size, an input is read at several sizes
(an image pyramid, :func:`pyramid`), each size gives its own response maps, and
:func:`pool_over_sizes` pools each over all its positions and then across the sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PoolKind = Literal["rms", "l2", "max"]
KINDS: tuple[str, ...] = ("rms", "l2", "max")


def pool(
    x: Tensor, size: int | None = None, stride: int | None = None, kind: PoolKind = "rms"
) -> Tensor:
    """Pool each map of ``x`` (N, C, H, W) over ``size x size`` windows.

    Parameters
    ----------
    size : window side; ``None`` = the whole map (a window of H x W, output 1 x 1).
    stride : step between windows; ``None`` = ``size`` (no overlap).
    kind : ``"rms"``, ``"l2"`` or ``"max"``.

    Returns
    -------
    (N, C, (H - kh) // stride + 1, (W - kw) // stride + 1), with (kh, kw) = (size, size) or (H, W).
    """
    if kind not in KINDS:
        raise ValueError(f"pool kind={kind!r} must be one of {KINDS}")
    if x.dim() != 4:
        raise ValueError(f"pool needs (N, C, H, W) maps, got shape {tuple(x.shape)}")
    window, step = pool_window(tuple(x.shape[2:]), size, stride)
    if kind == "max":
        return F.max_pool2d(x, window, step)
    mean_sq = F.avg_pool2d(x.square(), window, step)
    if kind == "l2":
        mean_sq = mean_sq.mul_(window[0] * window[1])
    return mean_sq.sqrt_()


def pool_window(shape: tuple[int, int], size: int | None, stride: int | None
                ) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(window, step)`` of :func:`pool` on maps of ``shape`` (H, W): ``size`` None is the
    whole map, ``stride`` None is the window. Raises ValueError for a window that does not fit."""
    H, W = shape
    window = (H, W) if size is None else (size, size)
    step = window if stride is None else (stride, stride)
    if min(window) < 1 or min(step) < 1 or window[0] > H or window[1] > W:
        raise ValueError(
            f"pool(size={size}, stride={stride}) needs 1 <= size <= map side and stride >= 1; "
            f"maps are {H}x{W}"
        )
    return window, step


def pyramid(x: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """``x`` (N, C, H, W) resampled to each ``size x size`` (antialiased bilinear), in order."""
    if x.dim() != 4 or not sizes or min(sizes) < 1:
        raise ValueError(
            f"pyramid needs (N, C, H, W) images and sizes >= 1, got {tuple(x.shape)}, {sizes}"
        )
    out = []
    for s in sizes:
        if (s, s) == tuple(x.shape[2:]):
            out.append(x)
        else:
            out.append(F.interpolate(x, size=(s, s), mode="bilinear", antialias=True,
                                     align_corners=False))
    return out


def pool_over_sizes(maps: Sequence[Tensor], kind: PoolKind = "max") -> Tensor:
    """Pool each (N, K, h_i, w_i) response map over all its positions, then across the sizes.

    Returns (N, K): ``kind`` over the union of every size's positions (for max and rms this is
    pooling over position and size at once; rms weights each size by its number of positions).
    """
    if not maps:
        raise ValueError("pool_over_sizes needs at least one response map")
    if kind == "max":
        return torch.stack([m.amax((2, 3)) for m in maps]).amax(0)
    if kind not in KINDS:
        raise ValueError(f"pool kind={kind!r} must be one of {KINDS}")
    sums = sum(m.square().sum((2, 3)) for m in maps)  # (N, K)
    if kind == "l2":
        return sums.sqrt()
    count = sum(m.shape[2] * m.shape[3] for m in maps)
    return (sums / count).sqrt()


def respond_over_sizes(
    x: Tensor, sizes: Sequence[int], respond: Callable[[Tensor], Tensor], kind: PoolKind = "max"
) -> Tensor:
    """``respond`` (images -> response maps (N, K, h, w)) applied to every level of the pyramid of
    ``x``, pooled over position and size: (N, K)."""
    return pool_over_sizes([respond(level) for level in pyramid(x, sizes)], kind)
