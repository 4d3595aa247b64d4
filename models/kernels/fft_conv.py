"""A valid cross-correlation with a wide kernel over many channels (``F.conv2d``), by FFT.

A competitive stage whitens every ``r x r`` window of ``C`` maps to ``d`` values: a convolution
of ``P Q C r^2 d`` multiply-adds for ``P x Q`` output positions (for the demo's top stage, 8 x 8
windows of 64 maps to 192 values: 786,432 per position). In the Fourier domain over an
``H x W`` grid of the input the same output is, per frequency bin ``f``,
one product over the channels::

    Y[n, o, f] = sum_c X[n, c, f] conj(K[o, c, f])          (X, K: 2-D real FFTs of x and w)
    y[n, o, p, q] = irfft2(Y)[n, o, p, q] + b[o],   p < H - r + 1, q < W - r + 1

(the cross-correlation theorem; a circular correlation over the grid equals the valid one at
these positions, since no window wraps around), ``C d`` complex multiply-adds per bin and
``H (W // 2 + 1)`` bins: for ``r = 8`` about a sixteenth of the direct count per output
position. The transforms are memory-bound passes over the inputs and outputs, so the measured
gain is smaller than that count (``benchmarks/fft_conv.py``). Values equal ``F.conv2d``'s up to
float rounding (``tests/models/kernels/test_fft_conv.py``).

The per-bin products run in a numba kernel on CPU tensors that need no gradient: about as fast
as torch's complex ``bmm`` at these shapes, and each input's output is computed by the same
operations in the same order whatever else is in the batch, so an input's result does not
depend on its batch (``bmm`` gave a lone input other roundings; torch's transforms give each
input the same values alone as in a batch, which the tests check). A competitive stage's
per-frame input cache relies on that (:mod:`models.read_cache`). Elsewhere (CUDA, autograd) the
products are a ``bmm`` and the whole path is differentiable.

The grid is the input's own size: padding it to a size with only small prime factors made the
transforms faster but left more bins and outputs, slower in all (measured at the demo's sizes).
The kernel's spectrum depends only on the weight and the grid, so :class:`FFTConv2d` computes it
once per input size and keeps it (``8 C d`` bytes a bin in float32: 127 MB for the demo's four
level sizes); a stage calls it with the same few sizes (its pyramid's levels) each time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels.counter_rng import HAVE_NUMBA, matched_threads

# The FFT form's time per frequency bin, in direct multiply-adds per output position (both per
# channel pair C d): 4 real multiply-adds per complex one, times about 8 for the transforms'
# memory-bound passes (``benchmarks/fft_conv.py`` at the demo's level sizes).
FFT_COST_PER_BIN = 32


if HAVE_NUMBA:
    from numba import njit, prange

    @njit(parallel=True, error_model="numpy", cache=True)  # no fastmath: see below
    def _bin_products(x, kr, ki, y):  # pragma: no cover - compiled
        """``y[f, n] = x[f, n] @ k[f]`` for every bin ``f``: complex ``x`` (F, N, C) and ``y``
        (F, N, d), ``k`` (F, C, d) as its real and imaginary parts. One task per bin; four
        inputs share each read of ``k[f, c]``, and every input's sums run over ``c`` in order
        in its own accumulators, so its result does not depend on the others. Without
        fastmath: with it the compiler may fuse the products and sums of one of the four
        slots differently from another's, and an input's result would depend on its slot."""
        F, N, C = x.shape
        d = kr.shape[2]
        for f in prange(F):
            ar = np.empty((4, d), dtype=kr.dtype)
            ai = np.empty((4, d), dtype=kr.dtype)
            xr = np.empty((4, C), dtype=kr.dtype)
            xi = np.empty((4, C), dtype=kr.dtype)
            for n0 in range(0, N, 4):
                m = min(4, N - n0)
                for j in range(4):
                    n = n0 + j if j < m else n0  # a short last group repeats its first
                    for c in range(C):
                        xr[j, c], xi[j, c] = x[f, n, c].real, x[f, n, c].imag
                ar[:] = 0
                ai[:] = 0
                for c in range(C):
                    for o in range(d):
                        p, q = kr[f, c, o], ki[f, c, o]
                        for j in range(4):
                            ar[j, o] += xr[j, c] * p - xi[j, c] * q
                            ai[j, o] += xr[j, c] * q + xi[j, c] * p
                for j in range(m):
                    for o in range(d):
                        y[f, n0 + j, o] = ar[j, o] + 1j * ai[j, o]


def bin_products(x: Tensor, k: Tensor) -> Tensor:
    """``bmm(x, k)`` for complex ``x`` (F, N, C) and ``k`` (F, C, d) given as its real and
    imaginary parts ``(2, F, C, d)``: the numba kernel for CPU tensors that need no gradient,
    ``torch.bmm`` otherwise."""
    if not (HAVE_NUMBA and x.device.type == "cpu" and x.dtype in (torch.complex64,
                                                                   torch.complex128)
            and not (torch.is_grad_enabled() and (x.requires_grad or k.requires_grad))):
        return torch.bmm(x, torch.complex(k[0], k[1]))
    y = torch.empty(x.shape[0], x.shape[1], k.shape[3], dtype=x.dtype)
    with matched_threads():
        _bin_products(x.contiguous().numpy(), k[0].numpy(), k[1].numpy(), y.numpy())
    return y


class FFTConv2d:
    """``F.conv2d(x, weight, bias, stride)`` (no padding) computed through FFTs.

    Parameters
    ----------
    weight : (d, C, r, s) the kernel bank (held, not copied: do not change it in place).
    bias : (d,) or None.
    stride : output positions kept in each direction (the stride-1 output subsampled).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> None:
        self.weight, self.bias, self.stride = weight, bias, stride
        self._spectra: dict[tuple[int, int], Tensor] = {}

    def spectrum(self, H: int, W: int) -> Tensor:
        """``conj(K)`` on the grid of an ``H x W`` input, laid out for the per-bin product: its
        real and imaginary parts (2, bins, C, d)."""
        key = (H, W)
        if key not in self._spectra:
            d, C = self.weight.shape[:2]
            k = torch.fft.rfft2(self.weight, s=(H, W))  # (d, C, H, W // 2 + 1)
            k = k.conj().permute(2, 3, 1, 0).reshape(-1, C, d)
            self._spectra[key] = torch.stack([k.real, k.imag])
        return self._spectra[key]

    def __call__(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, d, (H - r) // stride + 1, (W - s) // stride + 1)."""
        N, C, H, W = x.shape
        d, _, r, s = self.weight.shape
        if H < r or W < s:
            raise ValueError(f"input {H}x{W} is smaller than the kernel {r}x{s}")
        X = torch.fft.rfft2(x)  # (N, C, H, W // 2 + 1)
        bins = X.shape[2] * X.shape[3]
        Y = bin_products(X.permute(2, 3, 0, 1).reshape(bins, N, C), self.spectrum(H, W))
        Y = Y.reshape(H, -1, N, d).permute(2, 3, 0, 1)  # (N, d, H, W // 2 + 1)
        y = torch.fft.irfft2(Y, s=(H, W))[:, :, :H - r + 1:self.stride, :W - s + 1:self.stride]
        return y if self.bias is None else y + self.bias[:, None, None]


class WindowConv:
    """``F.conv2d(x, weight, bias, stride)`` by the cheaper of the direct and the FFT form for
    ``x``'s size: the FFT form on a CPU where ``H (W // 2 + 1) FFT_COST_PER_BIN`` is below the
    direct form's ``P Q r s`` (``P x Q`` strided output positions); on CUDA always direct (cuDNN
    chooses among its own algorithms, FFT ones included)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> None:
        self.weight, self.bias, self.stride = weight, bias, stride
        self.fft = FFTConv2d(weight, bias, stride)

    def uses_fft(self, x: Tensor) -> bool:
        """Whether ``x`` (N, C, H, W) goes through the FFT form."""
        H, W = x.shape[-2:]
        r, s = self.weight.shape[-2:]
        positions = ((H - r) // self.stride + 1) * ((W - s) // self.stride + 1)
        return (x.device.type == "cpu" and H >= r and W >= s
                and H * (W // 2 + 1) * FFT_COST_PER_BIN < positions * r * s)

    def __call__(self, x: Tensor) -> Tensor:
        """The convolution of ``x`` (N, C, H, W), one call for the batch."""
        if self.uses_fft(x):
            return self.fft(x)
        return F.conv2d(x, self.weight, self.bias, stride=self.stride)

    def each(self, x: Tensor) -> Tensor:
        """The same, with each input's output independent of the rest of the batch: the FFT
        form as is (module docstring), the direct form one input at a time (some convolution
        kernels round differently for different batch sizes)."""
        if self.uses_fft(x) or not len(x):
            return self(x)
        return torch.cat([self(x[i:i + 1]) for i in range(len(x))])
