"""A transposed convolution (a tied RBM's down pass) as one matrix product and ``r^2`` shifted adds.

A convolutional RBM's visible input sums every hidden unit's filter at its position::

    x[n, c, y s + i, x s + j] += sum_k W[k, c, i, j] h[n, k, y, x]      (F.conv_transpose2d)

With ``cols[n, (c, i, j), (y, x)] = sum_k W[k, (c, i, j)] h[n, k, (y, x)]``, one batched matrix
product ``W^T (C r^2, K) @ h (K, P Q)``, the sum is ``r^2`` strided adds, one per filter tap
``(i, j)``: ``x[n, c, i::s, j::s] += cols[n, c, i, j]`` over the ``P x Q`` grid. The product
carries every multiply-add (``C r^2 K P Q`` per input); the adds are ``C r^2 P Q`` passes over
memory.

Why: on CPU, torch's ``conv_transpose2d`` with few visible channels (a ConvRBM on grey frames:
``C = 1``) runs an unblocked fallback at a fraction of the machine's GEMM rate, and the same sum
as a ``conv2d`` of the padded hidden maps with one output channel is slower still; the product
form runs at the GEMM's rate for its shape (``benchmarks/rbm.py``, ``tied_conv_rbm_cd1``).
``cols`` holds ``C r^2 P Q`` values per input, so the batch is taken in chunks that keep it
under :data:`COLS_BUDGET_BYTES`. On CUDA, cuDNN's own transposed convolution is used.

Values equal ``F.conv_transpose2d``'s up to float rounding, and the path is differentiable
(``tests/models/kernels/test_transposed_conv.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

COLS_BUDGET_BYTES = 256 * 2**20  # the product's output per chunk of the batch


def conv_transpose2d(h: Tensor, weight: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """``sum_k W_k (*)^T h_k`` at visible size ``size``: ``h (N, K, P, Q)``, ``weight (K, C, r,
    r)`` -> ``(N, C, H, W)``; rows and columns no filter reaches (a strided or uneven grid) are
    0. ``size`` must be at least ``((P - 1) s + r, (Q - 1) s + r)``."""
    N, K, P, Q = h.shape
    C, r = weight.shape[1], weight.shape[2]
    H, W = size
    if H < (P - 1) * stride + r or W < (Q - 1) * stride + r:
        raise ValueError(f"visible size {tuple(size)} is smaller than a {P}x{Q} grid of "
                         f"{r}x{r} filters at stride {stride} covers")
    if h.device.type == "cuda":
        x = F.conv_transpose2d(h, weight, stride=stride)
        return F.pad(x, (0, W - x.shape[3], 0, H - x.shape[2]))
    per_input = C * r * r * P * Q * h.element_size()
    chunk = max(1, COLS_BUDGET_BYTES // per_input)
    parts = [_shift_add(h[a:a + chunk], weight, stride, size) for a in range(0, N, chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _shift_add(h: Tensor, weight: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """One chunk: ``cols = W^T @ h`` (one batched product), then one strided add per tap."""
    N, K, P, Q = h.shape
    C, r = weight.shape[1], weight.shape[2]
    cols = torch.matmul(weight.reshape(K, C * r * r).t(), h.reshape(N, K, P * Q))
    cols = cols.view(N, C, r, r, P, Q)
    x = h.new_zeros(N, C, *size)
    y_span, x_span = (P - 1) * stride + 1, (Q - 1) * stride + 1
    for i in range(r):
        for j in range(r):
            x[:, :, i:i + y_span:stride, j:j + x_span:stride] += cols[:, :, i, j]
    return x
