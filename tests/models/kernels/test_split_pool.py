"""The fused normalise / sign-split / pool kernel against the direct computation."""

from __future__ import annotations

import pytest
import torch

import models.kernels.split_pool as sp
from models.pooling import pool


def direct(y, s, c, a, b, size, stride, kind, split):
    """The definition, written out: h = s y + c a + b, then [relu(h), relu(-h)] pooled."""
    h = y * s + c * a.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    if not split:
        return pool(h, size, stride, kind)
    return torch.cat([pool(torch.relu(h), size, stride, kind),
                      pool(torch.relu(-h), size, stride, kind)], 1)


def parts(dtype, shape=(3, 5, 11, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    N, K, H, W = shape
    return (torch.randn(shape, generator=g, dtype=dtype),
            torch.rand((N, 1, H, W), generator=g, dtype=dtype) + 0.5,
            torch.randn((N, 1, H, W), generator=g, dtype=dtype),
            torch.randn(K, generator=g, dtype=dtype),
            torch.randn(K, generator=g, dtype=dtype))


@pytest.mark.parametrize("kind", ["rms", "l2", "max"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("window", [(3, 2), (2, None), (None, None), (4, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_equals_the_definition(kind, split, window, dtype):
    y, s, c, a, b = parts(dtype)
    size, stride = window
    want = direct(y, s, c, a, b, size, stride, kind, split)
    got = sp.split_pool(y, s, c, a, b, size, stride, kind, split)
    assert sp._numba_ok(y, s, c, a, b)  # the compiled path was the one measured
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["rms", "max"])
def test_torch_path_equals_the_kernel(kind, monkeypatch):
    y, s, c, a, b = parts(torch.float32, (2, 4, 13, 13), seed=1)
    got = sp.split_pool(y, s, c, a, b, 3, 2, kind, True)
    monkeypatch.setattr(sp, "_numba_ok", lambda *ts: False)
    want = sp.split_pool(y, s, c, a, b, 3, 2, kind, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_no_affine_is_the_identity_and_the_input_is_left_unchanged():
    y = parts(torch.float32)[0]
    before = y.clone()
    got = sp.split_pool(y, None, None, None, None, 3, 2, "rms", True)
    assert torch.equal(y, before)
    torch.testing.assert_close(got, torch.cat([pool(torch.relu(y), 3, 2),
                                               pool(torch.relu(-y), 3, 2)], 1))


def test_torch_thread_count_is_kept():
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sp.split_pool(*parts(torch.float32), 3, 2, "rms", True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)


def test_bad_pooling_is_refused():
    with pytest.raises(ValueError, match="kind"):
        sp.split_pool(*parts(torch.float32), 3, 2, "mean", True)
    with pytest.raises(ValueError, match="size"):
        sp.split_pool(*parts(torch.float32), 12, 2, "rms", True)
