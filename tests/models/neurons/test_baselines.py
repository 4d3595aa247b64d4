"""Baselines and references: image statistics, the confound figure, the template, exemplar
filters in the same stack (random and spread-out windows), and the per-bin breakdown of a
held-out winner."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.neurons import breakdown
from models.neurons.baselines import reweighted_stack, spread_exemplar_stack
from models.neurons.image_stats import confound_balanced_accuracy, image_statistics
from models.neurons.selectivity import heldout_scores, stratified_halves
from models.neurons.template import template_responses
from models.stack import RBMStack, StackConfig


def test_image_statistics_and_a_confounded_probe():
    rng = np.random.default_rng(0)
    flat = np.full((1, 1, 16, 16), 100, np.uint8)
    stats = image_statistics(flat)
    assert stats[0].tolist() == [100.0, 0.0, 0.0, 0.0]
    sharp = rng.integers(0, 256, (40, 1, 16, 16)).astype(np.uint8)
    soft = np.stack([cv2.GaussianBlur(im[0], (5, 5), 2)[None] for im in sharp])
    x, y = np.concatenate([sharp, soft]), np.r_[np.ones(40), np.zeros(40)].astype(int)
    assert image_statistics(sharp)[:, 2].mean() > 5 * image_statistics(soft)[:, 2].mean()
    groups = np.r_[np.arange(40), np.arange(40)]  # an image and its blurred twin
    assert confound_balanced_accuracy(x, y, groups) > 0.95
    same = rng.permutation(x)  # labels unrelated to the images
    assert confound_balanced_accuracy(same, y) < 0.7


def test_template_finds_its_pattern_at_any_place_and_size():
    rng = np.random.default_rng(1)
    t = np.zeros((9, 9))
    t[2:7, 2:7] = 1.0  # a square
    images = rng.integers(0, 60, (4, 1, 32, 32)).astype(np.uint8)
    images[0, 0, 7:17, 14:24] = 255  # the pattern at 18 px (its square: 10 px)
    images[1, 0, 22:28, 4:10] = 255  # at 10 px (6 px)
    r = template_responses(images, t, [10, 14, 18, 22])[:, 0]
    assert r[0] > 0.8 and r[1] > 0.8 and max(r[2:]) < 0.5
    images[2, 0, 7:17, 14:24] = 255  # the square alone, its surround bright
    images[2, 0, 5:19, 12:26] = 255
    images[2, 0, 9:15, 16:22] = 255
    plain = template_responses(images[2:3], t, [18])[0, 0]
    inner = template_responses(images[2:3], t, [18], lambda s: np.ones((s, s)))[0, 0]
    assert abs(plain - inner) < 1e-5  # an all-ones mask is no mask


def test_exemplar_stack_has_the_stack_geometry_and_training_patches_as_weights():
    cfg = StackConfig(input_size=16, stages=[{"field": 6, "stride": 2, "n_maps": 4, "pool": 2},
                                             {"field": 2, "stride": 1, "n_maps": 3, "pool": 1}])
    stack = RBMStack(cfg, device="cpu", generator=torch.Generator().manual_seed(0))
    frames = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    ex = reweighted_stack(stack, frames, "exemplar", torch.Generator().manual_seed(1),
                          n_frames=32)
    w0 = ex.rbms[0].params["W"]  # (P, K, D)
    assert w0.shape == stack.rbms[0].params["W"].shape
    patches = ex.rbms[0].geometry.patches(ex.stage_input(frames, 0))  # (P, N, D)
    centred = patches - patches.mean(2, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(w0[:, :, None, :], centred[:, None], dim=3)
    assert (cos.amax(2) > 0.999).all()  # every map's weights are one frame's patches
    h = ex.rbms[1].mean_hiddens(ex.stage_input(frames, 1))
    assert h.shape[1] == 3 and 0.2 < float(h.mean()) < 0.8  # standardised, not saturated
    rand = reweighted_stack(stack, None, "random", torch.Generator().manual_seed(1))
    w = rand.rbms[0].params["W"]
    assert float(w.std()) == pytest.approx(0.01, rel=0.1)  # the initial weights, no data in them


def test_reweighted_stack_of_a_pyramid_fits_the_whitening_for_random_weights_too():
    cfg = StackConfig.from_dict({"input_size": 16, "input_lcn_sigma": 0.0, "stages": [
        {"kind": "tied", "learner": "kmeans", "field": 3, "n_maps": 4, "pool": 2,
         "pool_stride": 2},
        {"kind": "competitive", "field": 2, "n_maps": 5, "dims": 6, "sizes": [16, 12]}]})
    stack = RBMStack(cfg, device="cpu")
    frames = torch.randint(0, 256, (20, 1, 16, 16), dtype=torch.uint8)
    rand = reweighted_stack(stack, frames, "random", torch.Generator().manual_seed(1))
    assert float(rand.stages[1].white["weight"].abs().sum()) > 0  # fitted, not the zero start
    with pytest.raises(ValueError, match="need training frames"):
        reweighted_stack(stack, None, "random", torch.Generator())


def _pyramid_stack(n_maps: int, init: str = "exemplar") -> RBMStack:
    cfg = StackConfig.from_dict({"input_size": 16, "input_lcn_sigma": 0.0, "stages": [
        {"kind": "tied", "learner": "kmeans", "field": 3, "n_maps": 4, "pool": 2,
         "pool_stride": 2},
        {"kind": "competitive", "field": 2, "n_maps": n_maps, "dims": 6, "sizes": [16, 12],
         "init": init}]})
    return RBMStack(cfg, device="cpu", generator=torch.Generator().manual_seed(0))


def test_exemplar_baseline_takes_random_windows_whatever_the_trained_stage_started_from():
    """A run whose top stage started at spread-out windows (``init = "spread"``) is still
    compared with random training windows as weights: the baseline's meaning does not follow
    the run's config."""
    frames = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    units = [reweighted_stack(_pyramid_stack(6, init), frames, "exemplar",
                              torch.Generator().manual_seed(3)).stages[1].learner.params["W"]
             for init in ("exemplar", "spread")]
    assert torch.equal(units[0], units[1])


def _distinct(rows: torch.Tensor) -> int:
    """How many of ``rows`` differ from every earlier row (by more than rounding)."""
    d = torch.cdist(rows, rows)
    return int(sum(bool((d[i, :i] > 1e-3).all()) for i in range(len(rows))))


def test_spread_exemplars_are_the_exemplar_stack_with_k_means_pp_windows_as_units():
    """Two distinct frames, 32 copies each: about 100 distinct windows among the candidates, so
    24 random picks repeat some; k-means++ draws by squared distance to the picks so far, so it
    never picks a window again while an unpicked one is left."""
    stack = _pyramid_stack(n_maps=24)
    two = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    frames = two.repeat(32, 1, 1, 1)
    repeats = 0
    for seed in range(4):
        ex = reweighted_stack(stack, frames, "exemplar", torch.Generator().manual_seed(seed))
        spread = spread_exemplar_stack(ex, frames, torch.Generator().manual_seed(seed))
        assert torch.equal(spread.stages[1].white["weight"], ex.stages[1].white["weight"])
        assert torch.equal(spread.stages[0].learner.params["W"], ex.stages[0].learner.params["W"])
        means = {name: s.stages[1].learner.params["W"] + s.stages[1].learner.params["b"]
                 for name, s in (("exemplar", ex), ("spread", spread))}
        # each unit's mean is one unit-length training window (times sqrt(dims))
        assert torch.allclose(means["spread"].norm(dim=1), torch.full((24,), 6**0.5), atol=1e-4)
        assert _distinct(means["spread"]) == 24
        repeats += 24 - _distinct(means["exemplar"])
    assert repeats > 0  # random exemplars repeat windows here: the check can tell them apart
    local = RBMStack(StackConfig(input_size=16, stages=[
        {"field": 6, "stride": 2, "n_maps": 4, "pool": 2}]), device="cpu")
    assert spread_exemplar_stack(local, frames, torch.Generator()) is None


def test_breakdown_scores_each_bin_and_reports_the_chosen_units():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(40), np.zeros(40)].astype(int)
    bins = np.r_[np.arange(40) % 2, np.arange(40) % 2]  # 0 = small, 1 = large
    x = rng.normal(size=(80, 3))
    x[:, 1] += 5.0 * y * (bins == 1)  # detects large ones only
    splits = stratified_halves(y, 6, groups=np.r_[np.arange(40), np.arange(40)])
    held = heldout_scores(x, y, splits=splits)
    got = breakdown.by_bin(x, y, held, splits, bins, ("small", "large"))
    assert got["large"]["heldout_balanced_accuracy"] > 0.9
    assert got["small"]["heldout_balanced_accuracy"] < 0.7 and got["small"]["n_images"] == 40
    stab = breakdown.stability(held, ["a", "b", "c"])
    assert stab["per_split"] == ["b"] * 6 and stab["share"] == {"b": 1.0}
    boxes = np.array([[0, 0, 10, 10], [20, 20, 32, 32], [0, 20, 8, 28]])
    assert breakdown.quadrants(boxes, 32).tolist() == [0, 3, 1]
    assert breakdown.size_bins(boxes, 32, (0.25, 0.4)).tolist() == [1, 2, 0]


def test_spread_picks_run_with_one_blas_thread_and_pick_the_same_windows(monkeypatch):
    """scikit-learn's k-means++ in the spread exemplars runs on one BLAS thread (beside torch's
    threads a second one mostly waits), and picks what it picks with the default pool."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import models.neurons.baselines as baselines
    from models.competitive.seeding import spread_picks

    seen, picks = [], []

    def recording(rows, k, generator):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        picks.append((rows.clone(), generator.get_state(), spread_picks(rows, k, generator)))
        return picks[-1][2]

    monkeypatch.setattr(baselines, "spread_picks", recording)
    stack = _pyramid_stack(n_maps=24)
    frames = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    ex = reweighted_stack(stack, frames, "exemplar", torch.Generator().manual_seed(1))
    with threadpool_limits(2, user_api="blas"):
        spread_exemplar_stack(ex, frames, torch.Generator().manual_seed(2))
        rows, state, pick = picks[0]
        again = spread_picks(rows, 24, torch.Generator().set_state(state))
    assert seen and set(seen) == {1}
    assert torch.equal(again, pick)
