"""Windows of a batch of maps at given places, without unfolding every position.

A stage that trains on a few random windows per frame (``rows_per_frame`` of thousands of
positions) reads just those windows: an index into the maps, not ``F.unfold`` of the whole
frame followed by a gather (which touches every position's window to keep a handful).
"""

from __future__ import annotations

import torch
from torch import Tensor


def windows_hwc(x: Tensor, i: Tensor, y: Tensor, z: Tensor, field: int) -> Tensor:
    """The ``field x field`` windows of ``x (N, C, H, W)`` whose top-left corners are
    ``(y[m], z[m])`` in input ``i[m]``, each flattened position-major (r, r, C):
    ``(M, r r C)``. No reordering copy; on a channels-last ``x`` each position's C values are
    read together."""
    off = torch.arange(field, device=x.device)
    ys, zs = (y[:, None] + off)[:, :, None], (z[:, None] + off)[:, None]
    return x.permute(0, 2, 3, 1)[i[:, None, None], ys, zs].reshape(len(i), -1)


def windows_at(x: Tensor, i: Tensor, y: Tensor, z: Tensor, field: int) -> Tensor:
    """As :func:`windows_hwc`, flattened as ``F.unfold`` does (C, r, r): ``(M, C r r)``. One
    gather from a strided view of every window ``(N, H - r + 1, W - r + 1, C, r, r)`` of ``x``
    (no copy until the gather)."""
    N, C, H, W = x.shape
    s = x.stride()
    every = x.as_strided((N, H - field + 1, W - field + 1, C, field, field),
                         (s[0], s[2], s[3], s[1], s[2], s[3]))
    return every[i, y, z].reshape(len(i), -1)


def random_windows(x: Tensor, field: int, stride: int, per_input: int,
                   generator: torch.Generator) -> Tensor:
    """``per_input`` windows of each input of ``x (N, C, H, W)`` at positions drawn uniformly
    from the ``L`` positions of ``F.unfold(x, field, stride=stride)`` (one ``randint(L)`` per
    window, so the same generator gives the same windows as unfold-then-gather would):
    ``(N * per_input, C r r)``, input-major."""
    N, _, H, W = x.shape
    w_out = (W - field) // stride + 1
    L = ((H - field) // stride + 1) * w_out
    pick = torch.randint(L, (N, per_input), generator=generator).reshape(-1).to(x.device)
    i = torch.arange(N, device=x.device).repeat_interleave(per_input)
    return windows_at(x, i, pick // w_out * stride, pick % w_out * stride, field)
