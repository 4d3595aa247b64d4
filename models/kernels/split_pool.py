"""A tied stage's output in one pass over its responses: per-patch normalisation, sign split and
pooling fused (numba), so each full-size response map is read once and never rewritten.

The stage's responses are ``h = s * y + c * a_k + b_k``: ``y`` (N, K, H, W) the convolution,
``s`` and ``c`` (N, H, W) per position (a k-means stage's patch normalisation: ``s = 1 /
sqrt(var + eps)``, ``c = mean * s``; ``s = 1``, ``c = 0`` for an RBM), ``a``, ``b`` (K,) per
map. Its output, for each window ``w`` of ``size x size`` positions, step ``stride``::

    sign split:  [pool_w relu(h), pool_w relu(-h)]   (N, 2K, Ph, Pw), positive maps first
    otherwise:    pool_w h                           (N, K, Ph, Pw)

with ``pool`` one of ``rms = sqrt(mean x^2)``, ``l2 = sqrt(sum x^2)``, ``max``
(:func:`models.pooling.pool`). Done in torch, the same output takes a pass each for the affine,
the two signs, the squares and the pooling over the full-size maps: memory-bound passes that
cost several times the convolution itself on a CPU.
:func:`split_pool` runs the kernel on contiguous CPU float tensors and the torch passes
elsewhere (CUDA); both give the same values up to float rounding
(``tests/models/kernels/test_split_pool.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from models.kernels.counter_rng import HAVE_NUMBA, matched_threads
from models.pooling import KINDS, pool, pool_window

if HAVE_NUMBA:
    from numba import njit, prange

    @njit(inline="always")
    def _combine(acc, x, kind):  # pragma: no cover - compiled
        """The pooling's reduction: max (kind 2) or sum (of squares, kinds 0 and 1)."""
        return max(acc, x) if kind == 2 else acc + x

    @njit(inline="always")
    def _finish(acc, kind, count):  # pragma: no cover - compiled
        """rms (0): sqrt(sum / count); l2 (1): sqrt(sum); max (2): as is."""
        if kind == 0:
            return math.sqrt(acc / count)
        return math.sqrt(acc) if kind == 1 else acc

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def _split_pool(y, s, c, a, b, kh, kw, stride, kind, split, out):  # pragma: no cover
        """``out`` (N, (1 + split) K, Ph, Pw) from ``y`` (N, K, H, W); kind 0 rms, 1 l2,
        2 max. One task per input; per map: the pooling inputs ``P`` of each sign (``h^2``
        for rms and l2, ``h`` for max), then the windows reduced along the rows at every
        column, then down the columns at the strided rows (contiguous inner loops)."""
        N, K, H, W = y.shape
        Ph, Pw = out.shape[2], out.shape[3]
        Wv, n_signs = W - kw + 1, 2 if split else 1
        for n in prange(N):
            P = np.empty((2, H, W), dtype=y.dtype)
            R = np.empty((2, H, Wv), dtype=y.dtype)
            V = np.empty((2, Wv), dtype=y.dtype)
            for k in range(K):
                ak, bk = a[k], b[k]
                for r in range(H):
                    for q in range(W):
                        h = s[n, r, q] * y[n, k, r, q] + c[n, r, q] * ak + bk
                        if split:
                            p, m = max(h, h - h), max(-h, h - h)  # relu(h), relu(-h)
                            P[0, r, q] = p if kind == 2 else p * p
                            P[1, r, q] = m if kind == 2 else m * m
                        else:
                            P[0, r, q] = h if kind == 2 else h * h
                for g in range(n_signs):
                    for r in range(H):
                        R[g, r, :] = P[g, r, :Wv]
                        for dx in range(1, kw):
                            for q in range(Wv):
                                R[g, r, q] = _combine(R[g, r, q], P[g, r, q + dx], kind)
                    for py in range(Ph):
                        r0 = py * stride
                        V[g, :] = R[g, r0, :]
                        for dy in range(1, kh):
                            for q in range(Wv):
                                V[g, q] = _combine(V[g, q], R[g, r0 + dy, q], kind)
                        for px in range(Pw):
                            out[n, g * K + k, py, px] = _finish(V[g, px * stride], kind,
                                                                kh * kw)


def _numba_ok(*ts: Tensor) -> bool:
    """The kernel can run: numba present, every tensor a contiguous CPU float32/float64 of one
    dtype."""
    return HAVE_NUMBA and all(t.device.type == "cpu" and t.dtype == ts[0].dtype
                              and t.dtype in (torch.float32, torch.float64)
                              and t.is_contiguous() for t in ts)


@torch.no_grad()
def split_pool(y: Tensor, s: Tensor | None, c: Tensor | None, a: Tensor | None,
               b: Tensor | None, size: int | None, stride: int | None, kind: str,
               split: bool) -> Tensor:
    """Pooled [sign-split] ``h = s y + c a + b`` (module docstring).

    Parameters
    ----------
    y : (N, K, H, W) responses before the affine (left unchanged).
    s, c : (N, 1, H, W) per-position scale and shift weight, or None (1 and 0).
    a, b : (K,) per-map shift weight and bias, or None (0).
    size, stride, kind : the pooling (:func:`models.pooling.pool`).
    split : sign split into ``2K`` maps.
    """
    if kind not in KINDS:
        raise ValueError(f"pool kind={kind!r} must be one of {KINDS}")
    N, K, H, W = y.shape
    (kh, kw), (sh, sw) = pool_window((H, W), size, stride)
    like = {"device": y.device, "dtype": y.dtype}
    s = torch.ones((N, 1, H, W), **like) if s is None else s
    c = torch.zeros((N, 1, H, W), **like) if c is None else c
    a = torch.zeros(K, **like) if a is None else a
    b = torch.zeros(K, **like) if b is None else b
    if not _numba_ok(y, s, c, a, b):
        return _torch_split_pool(y, s, c, a, b, size, stride, kind, split)
    out = torch.empty((N, (2 if split else 1) * K, (H - kh) // sh + 1, (W - kw) // sw + 1),
                      dtype=y.dtype)
    with matched_threads():  # a step of (sh, sw) with sh != sw is the whole map: any step
        _split_pool(y.numpy(), s.view(N, H, W).numpy(), c.view(N, H, W).numpy(), a.numpy(),
                    b.numpy(), kh, kw, sh, KINDS.index(kind), split, out.numpy())
    return out


def _torch_split_pool(y: Tensor, s: Tensor, c: Tensor, a: Tensor, b: Tensor,
                      size: int | None, stride: int | None, kind: str, split: bool) -> Tensor:
    """The same in torch passes (CUDA, other dtypes)."""
    h = y * s + c * a.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    if not split:
        return pool(h, size, stride, kind)
    return torch.cat([pool(h.clamp(min=0), size, stride, kind),
                      pool((-h).clamp(min=0), size, stride, kind)], 1)


__all__ = ["split_pool"]
