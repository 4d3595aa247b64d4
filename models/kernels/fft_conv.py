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
float rounding (``tests/models/kernels/test_fft_conv.py``), and the whole path is differentiable
(autograd runs through the transforms).

The grid is the input's own size: padding it to a size with only small prime factors made the
transforms faster but left more bins and outputs, slower in all (measured at the demo's sizes).
The kernel's spectrum depends only on the weight and the grid, so :class:`FFTConv2d` computes it
once per input size; a stage calls it with the same few sizes (its pyramid's levels) each time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The FFT form's time per frequency bin, in direct multiply-adds per output position (both per
# channel pair C d): 4 real multiply-adds per complex one, times about 8 for the transforms'
# memory-bound passes (``benchmarks/fft_conv.py`` at the demo's level sizes).
FFT_COST_PER_BIN = 32


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
        """``conj(K)`` on the grid of an ``H x W`` input, laid out for the per-bin product:
        (bins, C, d) complex."""
        key = (H, W)
        if key not in self._spectra:
            d, C = self.weight.shape[:2]
            k = torch.fft.rfft2(self.weight, s=(H, W))  # (d, C, n_h, n_w // 2 + 1)
            self._spectra[key] = k.conj().permute(2, 3, 1, 0).reshape(-1, C, d).contiguous()
        return self._spectra[key]

    def __call__(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, d, (H - r) // stride + 1, (W - s) // stride + 1)."""
        N, C, H, W = x.shape
        d, _, r, s = self.weight.shape
        if H < r or W < s:
            raise ValueError(f"input {H}x{W} is smaller than the kernel {r}x{s}")
        X = torch.fft.rfft2(x)  # (N, C, H, W // 2 + 1)
        bins = X.shape[2] * X.shape[3]
        Y = torch.bmm(X.permute(2, 3, 0, 1).reshape(bins, N, C), self.spectrum(H, W))
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
        if self.uses_fft(x):
            return self.fft(x)
        return F.conv2d(x, self.weight, self.bias, stride=self.stride)
