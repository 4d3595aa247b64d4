"""Pooling and contrast normalisation against brute force."""

from __future__ import annotations

import pytest
import torch

from models import (
    l2_pool,
    local_contrast_normalize,
)
from tests.models.helpers import DT, gen


# --------------------------------------------------------------------------- layers
def test_l2_pool_matches_brute_force():
    x = torch.randn(2, 3, 7, 6, generator=gen(1), dtype=DT)
    out = l2_pool(x, 3, 2)
    assert out.shape == (2, 3, 3, 2)
    for i in range(3):
        for j in range(2):
            window = x[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            torch.testing.assert_close(out[:, :, i, j], window.square().sum((2, 3)).sqrt())


def test_local_contrast_normalize_properties():
    g = gen(2)
    x = torch.rand(3, 2, 20, 20, generator=g, dtype=DT) * 5 + 10
    x_copy = x.clone()
    y = local_contrast_normalize(x, sigma=2.0)
    assert torch.equal(x, x_copy)
    assert y.shape == x.shape and y.dtype == x.dtype
    # invariant to brightness offset and contrast gain
    torch.testing.assert_close(local_contrast_normalize(3 * x + 7, sigma=2.0), y)
    # locally zero-mean: a blurred (over all channels) output is near zero
    assert y.mean().abs() < 0.05
    flat = torch.full((1, 1, 10, 10), 0.3)
    assert torch.isfinite(local_contrast_normalize(flat)).all()
    assert local_contrast_normalize(flat).abs().max() < 1e-4
    with pytest.raises(TypeError, match="float"):
        local_contrast_normalize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))


def test_local_contrast_normalize_gradient_is_finite_on_zero_variance_windows():
    """A flat frame, or a frame with a flat (black) region wider than the window, has windows
    of zero variance: the output there is 0 (the floor divides), and its gradient must be
    finite too (sqrt's derivative at 0 is infinite; 0 * inf would spread NaN into the frame)."""
    frame = torch.rand(1, 1, 20, 20, generator=gen(3), dtype=DT)
    frame[..., :, :10] = 0.0  # a black left half: every window inside it is flat
    for x in (frame, torch.full((1, 1, 12, 12), 0.3, dtype=DT), torch.zeros(1, 2, 9, 9)):
        x = x.clone().requires_grad_()
        y = local_contrast_normalize(x)
        probe = torch.randn(y.shape, generator=gen(4), dtype=y.dtype)
        (g,) = torch.autograd.grad((y * probe).sum(), x)
        assert torch.isfinite(y).all() and torch.isfinite(g).all()
