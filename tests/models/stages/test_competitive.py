"""Competitive stages: the pooled response against brute force over every window of every
level, the training rows, and the learners' input scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.competitive.spherical_kmeans import normalise_rows
from models.stages.competitive import CompetitiveStage
from models.stages.config import StageConfig


def _stage(learner, seed=0, field=3, init="exemplar"):
    st = StageConfig(kind="competitive", learner=learner, field=field, n_maps=5, dims=6,
                     rows_per_frame=4, init=init)
    return CompetitiveStage(st, (2, 7, 7), update=None, device="cpu", dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed))


def _levels(seed=1, sizes=(7, 5)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 2, s, s, generator=g, dtype=torch.float64) for s in sizes]


@pytest.mark.parametrize("field,sizes,fft", [(3, (7, 5), False), (8, (20, 17), True)])
def test_pooled_response_is_the_max_over_every_window_of_every_level(field, sizes, fft):
    stage = _stage("kmeans", field=field)
    levels = _levels(sizes=sizes)
    stage.prepare(levels, "exemplar", torch.Generator().manual_seed(2))
    # wide windows go through the FFT form of the whitening, narrow ones the direct one
    assert all(stage.whiten_conv.uses_fft(lv) == fft for lv in levels)
    got = stage.maps(levels)["pooled"][:, :, 0, 0]
    Wm, b = stage.white["weight"].flatten(1), stage.white["bias"]
    u = stage.unit_weights()
    for n in range(3):
        best = torch.full((5,), -2.0, dtype=torch.float64)
        for lv in levels:
            cols = F.unfold(lv[n : n + 1], field)[0].T  # (L, C r r): every window
            w = normalise_rows(cols @ Wm.T + b)
            best = torch.maximum(best, (w @ u.T).amax(0))
        torch.testing.assert_close(got[n], best)


def test_training_rows_are_whitened_windows_of_the_levels():
    stage = _stage("rbm")
    levels = _levels()
    stage.prepare(levels, "exemplar", torch.Generator().manual_seed(3))
    rows = stage.rows(levels)
    assert rows.shape == (8 * 2 * 2, 6)  # 4 per frame, spread over the 2 levels
    torch.testing.assert_close(rows.norm(dim=1), torch.full((32,), 6**0.5, dtype=rows.dtype))
    every = torch.cat([normalise_rows(F.unfold(lv, 3).transpose(1, 2).reshape(-1, 18)
                                      @ stage.white["weight"].flatten(1).T
                                      + stage.white["bias"]) for lv in levels])
    match = (rows / 6**0.5) @ every.T
    assert torch.all(match.amax(1) > 1 - 1e-9)  # each row is one of the windows


def test_exemplar_units_start_at_windows_and_random_ones_do_not():
    levels = _levels()
    ex, rnd = _stage("kmeans"), _stage("kmeans")
    ex.prepare(levels, "exemplar", torch.Generator().manual_seed(4))
    rnd.prepare(levels, "random", torch.Generator().manual_seed(4))
    torch.testing.assert_close(ex.white["weight"], rnd.white["weight"])
    r_ex = ex.maps(levels)["pooled"].amax()
    r_rnd = rnd.maps(levels)["pooled"].amax()
    assert float(r_ex) > 1 - 1e-6 > float(r_rnd)  # an exemplar unit meets its own window


@pytest.mark.parametrize("learner", ["rbm", "kmeans"])
def test_spread_units_start_at_distinct_windows_picked_by_k_means_plus_plus(learner):
    levels = _levels()
    stage = _stage(learner, init="spread")
    stage.prepare(levels, "exemplar", torch.Generator().manual_seed(4))
    every = torch.cat([normalise_rows(F.unfold(lv, 3).transpose(1, 2).reshape(-1, 18)
                                      @ stage.white["weight"].flatten(1).T
                                      + stage.white["bias"]) for lv in levels])
    match = stage.unit_weights() @ every.T  # (5 units, every window)
    assert torch.all(match.amax(1) > 1 - 1e-9)  # each unit is one of the windows
    assert len(set(match.argmax(1).tolist())) == 5  # and no two the same


def test_spread_init_is_for_competitive_stages_only():
    from models.stages.config import check_stage

    st = StageConfig(kind="tied", field=3, n_maps=4, init="spread")
    with pytest.raises(ValueError, match=r"s\.init='spread'"):
        check_stage(st, (1, 16, 16), "s", top=False)


@pytest.mark.parametrize("learner,field,sizes", [("kmeans", 3, (7, 5)), ("rbm", 8, (20, 17))])
def test_own_unit_responses_equal_the_pooled_maps_in_value_and_gradient(learner, field, sizes):
    """Through each input's best window alone: the value of ``differentiable_maps``' pooled
    response of that input's unit, and its gradient in every level (autograd of the whole)."""
    stage = _stage(learner, field=field)
    levels = _levels(sizes=sizes)
    stage.prepare(levels, "exemplar", torch.Generator().manual_seed(2))
    units = torch.tensor([0, 4, 2, 2, 1, 3, 0, 4])
    a = [lv.clone().requires_grad_(True) for lv in levels]
    whole = stage.differentiable_maps(a)["pooled"][torch.arange(8), units, 0, 0]
    want = torch.autograd.grad(whole.sum(), a)
    b = [lv.clone().requires_grad_(True) for lv in levels]
    own = stage.own_unit_responses(b, units)
    got = torch.autograd.grad(own.sum(), b)
    torch.testing.assert_close(own, whole.detach())
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert sum(int((g != 0).any((1, 2, 3)).sum()) for g in got) == 8  # one level an input
