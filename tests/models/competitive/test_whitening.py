"""Whitening: identity covariance on the kept directions, scikit-learn's PCA up to sign."""

from __future__ import annotations

import pytest
import torch
from sklearn.decomposition import PCA

from models.competitive.whitening import Whitening
from tests.models.helpers import DT, gen


def correlated(n=400, d=6, seed=0):
    g = gen(seed)
    mix = torch.randn(d, d, generator=g, dtype=DT)
    return torch.randn(n, d, generator=g, dtype=DT) @ mix + 3.0


@pytest.mark.parametrize("kind,out", [("pca", 4), ("zca", 6)])
def test_whitened_covariance_is_identity_on_kept_dims(kind, out):
    x = correlated()
    y = Whitening(4, kind=kind).fit(x).transform(x)
    assert y.shape == (400, out)
    cov = torch.cov(y.T)
    if kind == "pca":
        torch.testing.assert_close(cov, torch.eye(4, dtype=DT))
    else:  # rank 4: eigenvalues 1 (x4) and 0 (x2)
        lam = torch.linalg.eigvalsh(cov)
        torch.testing.assert_close(lam, torch.tensor([0, 0, 1, 1, 1, 1], dtype=DT), atol=1e-8,
                                   rtol=0)


def test_pca_kind_equals_sklearn_whitened_pca_up_to_sign():
    x = correlated(seed=3)
    ours = Whitening(3).fit(x).transform(x).numpy()
    theirs = PCA(3, whiten=True).fit_transform(x.numpy())
    signs = (ours * theirs).sum(0) > 0  # each component's sign is arbitrary: align them
    theirs = theirs * (2 * signs - 1)
    torch.testing.assert_close(torch.from_numpy(ours), torch.from_numpy(theirs))


def test_as_conv_whitens_every_window():
    maps = torch.randn(20, 2, 6, 6, generator=gen(1), dtype=DT)
    windows = maps.unfold(2, 3, 1).unfold(3, 3, 1)  # (N, C, 4, 4, 3, 3)
    rows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 2 * 9)
    w = Whitening(5, eps=1e-3).fit(rows)
    weight, bias = w.as_conv(2, 3)
    conv = torch.nn.functional.conv2d(maps, weight, bias)  # (N, 5, 4, 4)
    torch.testing.assert_close(conv.permute(0, 2, 3, 1).reshape(-1, 5), w.transform(rows))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="dims"):
        Whitening(10).fit(torch.randn(5, 4))
    with pytest.raises(RuntimeError, match="not fitted"):
        Whitening(2).transform(torch.randn(5, 4))


def test_randomized_method_equals_exact_on_the_kept_directions():
    g = gen(7)
    basis = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=DT))[0]
    spectrum = torch.cat([torch.linspace(20, 5, 8), torch.full((52,), 0.1)]).to(DT)
    x = (torch.randn(2000, 60, generator=g, dtype=DT) * spectrum.sqrt()) @ basis.T
    exact = Whitening(8).fit(x)
    fast = Whitening(8, method="randomized").fit(x)
    torch.testing.assert_close(fast.variances_, exact.variances_, rtol=1e-6, atol=0)
    a, b = exact.transform(x), fast.transform(x)
    torch.testing.assert_close(a.abs(), b.abs(), rtol=1e-4, atol=1e-4)  # up to each sign


def test_with_eps_equals_a_refit_with_that_eps():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 8, generator=g, dtype=torch.float64) * torch.arange(1, 9)
    fit = Whitening(5).fit(x)
    torch.testing.assert_close(fit.with_eps(0.7).matrix_, Whitening(5, eps=0.7).fit(x).matrix_)
