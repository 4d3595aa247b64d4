"""The mean of every ``r x r`` window of a map, equal bit for bit to ``F.avg_pool2d``.

A tied k-means stage normalises each patch by its own mean and variance: two window means of
the input per stage call (:meth:`models.stages.tied.TiedStage._response_parts`). ATen's CPU
kernel for a contiguous NCHW map sums each output's window alone, one element at a time: on a
one-channel map that is a scalar loop, and on these two cores it cost more than the stage's
convolution. This kernel keeps ATen's arithmetic exactly (each window summed row by row,
left to right, in the map's dtype, then divided by ``r * r``) but sums a whole output row at
once, so the compiler vectorises across neighbouring windows, which are independent sums.
Every output is therefore the same float as ``F.avg_pool2d(x, r, stride)``
(``tests/models/kernels/test_box_mean.py`` checks it with ``torch.equal``), and a model's
values and training do not move by one rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels.counter_rng import HAVE_NUMBA, matched_threads, numba_ready

if HAVE_NUMBA:
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def _box_mean(x, r, stride, out):  # pragma: no cover - compiled
        """``out (M, Ph, Pw)`` from ``x (M, H, W)``: the window sums in ATen's order (rows
        ``dy``, then columns ``dx``), one accumulator per output of a row."""
        M, Ph, Pw = out.shape
        area = x.dtype.type(r * r)
        for m in prange(M):
            acc = np.empty(Pw, dtype=x.dtype)
            for py in range(Ph):
                acc[:] = 0
                for dy in range(r):
                    row = x[m, py * stride + dy]
                    for dx in range(r):
                        if stride == 1:  # contiguous: the loop over px vectorises
                            for px in range(Pw):
                                acc[px] += row[px + dx]
                        else:
                            for px in range(Pw):
                                acc[px] += row[px * stride + dx]
                for px in range(Pw):
                    out[m, py, px] = acc[px] / area


def box_mean(x: Tensor, r: int, stride: int) -> Tensor:
    """``F.avg_pool2d(x, r, stride)`` for ``x (N, C, H, W)``: (N, C, (H - r) // stride + 1,
    (W - r) // stride + 1), the same floats. The numba kernel for a contiguous CPU float map
    without gradients; ``F.avg_pool2d`` itself otherwise (CUDA, autograd, other dtypes)."""
    if not numba_ready(x) or x.requires_grad:
        return F.avg_pool2d(x, r, stride)
    N, C, H, W = x.shape
    if r > min(H, W):
        raise ValueError(f"window {r} is larger than the map ({H}x{W})")
    out = torch.empty((N, C, (H - r) // stride + 1, (W - r) // stride + 1), dtype=x.dtype)
    with matched_threads():
        _box_mean(x.view(N * C, H, W).numpy(), r, stride, out.view(N * C, *out.shape[2:]).numpy())
    return out


__all__ = ["box_mean"]
