"""Fixed (unlearned) layers: local contrast normalisation and L2 pooling.

Local contrast normalisation follows Jarrett, Kavukcuoglu, Ranzato & LeCun (2009), "What is the
best multi-stage architecture for object recognition?" (section 2), as used by Le et al. (2012):

    v_cij = x_cij - sum_{c', p, q} w_pq x_{c', i+p, j+q}            (subtractive)
    sigma_ij = sqrt( sum_{c', p, q} w_pq v_{c', i+p, j+q}^2 )
    y_cij = v_cij / max(mean_ij(sigma), sigma_ij)                   (divisive)

with ``w`` a Gaussian window normalised so that it sums to 1 over all channels and offsets.
L2 pooling (Le et al. 2012, Hyvarinen et al. 2009) is the square root of the sum of squares over a
``k x k`` neighbourhood of one map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_window(sigma: float, *, device=None, dtype=torch.float32) -> Tensor:
    """1-D Gaussian of std ``sigma``, radius ceil(2 sigma), summing to 1; shape (2 radius + 1,)."""
    radius = max(1, math.ceil(2.0 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _blur_all_channels(x: Tensor, w1: Tensor) -> Tensor:
    """sum_{c', p, q} w_p w_q x_{c', i+p, j+q} / C: separable Gaussian over space, mean over C."""
    N, C, H, W = x.shape
    radius = (w1.numel() - 1) // 2
    m = x.mean(1, keepdim=True)  # (N, 1, H, W)
    mode = "reflect" if min(H, W) > radius else "replicate"
    m = F.pad(m, (radius, radius, radius, radius), mode=mode)
    m = F.conv2d(m, w1.view(1, 1, 1, -1))  # horizontal pass
    m = F.conv2d(m, w1.view(1, 1, -1, 1))  # vertical pass
    return m  # (N, 1, H, W)


def local_contrast_normalize(x: Tensor, sigma: float = 2.0, eps: float = 1e-4) -> Tensor:
    """Subtractive then divisive local contrast normalisation (Jarrett et al. 2009).

    Parameters
    ----------
    x : float maps (N, C, H, W) (or (C, H, W)); not modified.
    sigma : std of the Gaussian window in pixels.
    eps : floor of the divisor, so flat images stay finite (they map to 0).

    Returns
    -------
    Tensor of the same shape and dtype as ``x``.
    """
    if not torch.is_floating_point(x):
        raise TypeError(
            f"local_contrast_normalize needs float input, got {x.dtype}; "
            "convert uint8 frames with x.float() / 255 first"
        )
    if sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    w1 = gaussian_window(sigma, device=x.device, dtype=x.dtype)
    v = x - _blur_all_channels(x, w1)  # subtractive
    var = _blur_all_channels(v.square(), w1)  # (N, 1, H, W), >= 0
    # sqrt(var), with gradient 0 (not 0 * inf = NaN) where a window is flat (var = 0)
    flat = var == 0
    sd = var.masked_fill(flat, 1.0).sqrt_().masked_fill(flat, 0.0)
    floor = sd.mean((2, 3), keepdim=True).clamp_(min=eps)  # per image
    y = v / torch.maximum(sd, floor)
    return y.squeeze(0) if squeeze else y


def l2_pool(x: Tensor, size: int, stride: int = 1) -> Tensor:
    """L2 pooling: sqrt of the sum of squares over ``size x size`` windows of each map.

    Parameters
    ----------
    x : (N, C, H, W) maps; not modified.
    size : window side ``k``.
    stride : step between windows.

    Returns
    -------
    (N, C, (H - k) // stride + 1, (W - k) // stride + 1)
    """
    if size < 1 or stride < 1:
        raise ValueError(f"size={size} and stride={stride} must be >= 1")
    if x.dim() != 4 or size > min(x.shape[-2:]):
        raise ValueError(
            f"l2_pool(size={size}) needs (N, C, H, W) maps of side >= size, "
            f"got shape {tuple(x.shape)}"
        )
    s = F.avg_pool2d(x.square(), size, stride=stride).mul_(size * size)
    return s.sqrt_()
