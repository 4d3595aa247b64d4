"""Tied stages: responses against a direct per-patch computation, the RBM learner's
per-position update, and sign-split pooling."""

from __future__ import annotations

import pytest
import torch

from models.pooling import pool
from models.rbm.conv import ConvRBM
from models.stages.config import StageConfig
from models.stages.tied import PATCH_VAR_EPS, TiedStage

KW = {"update": None, "device": "cpu", "dtype": torch.float64}


def _stage(learner, **cfg):
    st = StageConfig(kind="tied", learner=learner, field=3, n_maps=4, pool=2, pool_stride=2,
                     pool_kind="rms", sign_split=True, rows_per_frame=50, **cfg)
    return TiedStage(st, (2, 9, 9), generator=torch.Generator().manual_seed(0), **KW)


def test_kmeans_response_is_the_unit_dotted_with_the_whitened_normalised_patch():
    stage = _stage("kmeans")
    g = torch.Generator().manual_seed(1)
    v = torch.rand(6, 2, 9, 9, generator=g, dtype=torch.float64)
    stage.prepare(v, "exemplar", g)
    h = stage.responses(v)
    U, Z, mu = stage.learner.unit_weights(), stage.zca["matrix"], stage.zca["mean"]
    for n, y, x in [(0, 0, 0), (3, 4, 2), (5, 6, 6)]:
        p = v[n, :, y:y + 3, x:x + 3].reshape(-1)
        p = (p - p.mean()) / (p.var(correction=0) + PATCH_VAR_EPS).sqrt()
        torch.testing.assert_close(h[n, :, y, x], U @ (Z @ (p - mu)))


def test_kmeans_rows_are_whitened_patches_and_exemplars_start_at_them():
    stage = _stage("kmeans")
    g = torch.Generator().manual_seed(2)
    v = torch.rand(4, 2, 9, 9, generator=g, dtype=torch.float64)
    stage.prepare(v, "exemplar", g)
    rows = stage.rows(v)
    assert rows.shape == (4 * 50, 18)
    # whitened rows: about identity covariance on the patches the ZCA was fitted on
    assert float((rows.T.cov() - torch.eye(18, dtype=rows.dtype)).abs().mean()) < 0.35


def test_sign_split_pooled_maps():
    stage = _stage("kmeans")
    v = torch.rand(2, 2, 9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    m = stage.maps(v)
    h = stage.responses(v)
    want = pool(torch.cat([h.clamp(min=0), (-h).clamp(min=0)], 1), 2, 2, "rms")
    torch.testing.assert_close(m["pooled"], want)
    assert m["pooled"].shape == (2, 8, 3, 3)


@pytest.mark.parametrize("learner", ["kmeans", "rbm"])
@pytest.mark.parametrize("sign_split", [True, False])
@pytest.mark.parametrize("kind", ["rms", "l2", "max"])
def test_in_place_maps_equal_the_differentiable_maps(learner, sign_split, kind):
    st = StageConfig(kind="tied", learner=learner, field=3, n_maps=4, pool=3, pool_stride=2,
                     pool_kind=kind, sign_split=sign_split, rows_per_frame=50)
    stage = TiedStage(st, (2, 11, 11), generator=torch.Generator().manual_seed(0), **KW)
    g = torch.Generator().manual_seed(5)
    v = torch.rand(3, 2, 11, 11, generator=g, dtype=torch.float64)
    stage.prepare(v, "exemplar", g)
    got, want = stage.maps(v)["pooled"], stage.differentiable_maps(v)["pooled"]
    assert got.shape == want.shape == (3, 8 if sign_split else 4, 4, 4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_rbm_learner_update_is_the_conv_rbm_update_per_position():
    stage = _stage("rbm")
    ref = ConvRBM(2, 3, 4, visible="gaussian", generator=torch.Generator().manual_seed(0), **KW)
    ref.params["W"].copy_(stage.learner.params["W"])
    v = torch.randn(5, 2, 9, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = stage.learner.compute_update(v, generator=torch.Generator().manual_seed(9))
    b = ref.compute_update(v, generator=torch.Generator().manual_seed(9))
    for k in a:
        torch.testing.assert_close(a[k], b[k] / 49)


def test_response_gradients_exist():
    stage = _stage("rbm")
    v = torch.randn(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    stage.differentiable_maps(v)["pooled"].sum().backward()
    assert v.grad is not None and float(v.grad.abs().sum()) > 0


def test_load_refuses_a_whitening_of_another_shape():
    stage = _stage("kmeans")
    state = stage.state_dict()
    state["zca"] = {"matrix": torch.eye(5), "mean": torch.zeros(5)}
    with pytest.raises(ValueError, match="whitening"):
        stage.load_state_dict(state)
