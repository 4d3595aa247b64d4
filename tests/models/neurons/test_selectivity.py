"""Selectivity protocols: exact answers on tiny problems, brute force, no peeking, sklearn AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.neurons.selectivity import (
    best_unit_score,
    fixed_split,
    group_bootstrap_std,
    heldout_scores,
    roc_auc,
    stratified_halves,
    threshold_scores,
)


def _planted(seed: int = 0, n: int = 60, n_units: int = 30, detector: int = 17):
    """Noise units plus one unit that equals the label (an exact detector)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(np.int64)  # unbalanced: a quarter positive
    x = rng.normal(size=(n, n_units))
    x[:, detector] = y * 2.0 + rng.uniform(0, 0.1, n)
    return x, y, detector


def test_planted_detector_is_perfect_and_ranked_first():
    x, y, det = _planted()
    whole = threshold_scores(x, y)
    assert float(whole["accuracy"][det]) == 1.0
    assert float(whole["balanced_accuracy"][det]) == 1.0
    assert float(whole["auc"][det]) == 1.0
    assert int(whole["balanced_accuracy"].argmax()) == det
    held = heldout_scores(x, y, n_splits=20)
    assert float(held.unit_balanced_accuracy[det]) == 1.0
    assert int(held.unit_balanced_accuracy.argmax()) == det
    assert (held.chosen == det).all()
    assert held.best_balanced_accuracy == 1.0 and held.best_accuracy == 1.0
    best = best_unit_score(x, y)["score"]
    assert best["index"] == det and best["polarity"] == 1 and best["heldout_auc"] == 1.0


def test_negative_polarity_detector():
    x, y, det = _planted()
    x[:, det] = -x[:, det]
    whole = threshold_scores(x, y)
    assert int(whole["polarity"][det]) == -1
    assert float(whole["balanced_accuracy"][det]) == 1.0
    assert float(whole["auc"][det]) == 1.0


def _brute_force(x: np.ndarray, y: np.ndarray, n_thr: int = 20):
    """Per unit: polarity by AUC (sklearn), thresholds at rank cut points, plain loops."""
    n, u = x.shape
    acc, bal, pols = np.zeros(u), np.zeros(u), np.zeros(u, int)
    for j in range(u):
        pol = 1 if roc_auc_score(y, x[:, j]) >= 0.5 else -1
        xs = np.sort(x[:, j])
        for i in range(n_thr):
            r = min(int(np.round(i * n / n_thr)), n - 1)
            t = xs[0] if r == 0 else (xs[r - 1] + xs[r]) / 2
            pred = [(x[m, j] >= t) if pol == 1 else (x[m, j] <= t) for m in range(n)]
            tp = sum(p and yy for p, yy in zip(pred, y, strict=True))
            tn = sum((not p) and (not yy) for p, yy in zip(pred, y, strict=True))
            b = 0.5 * (tp / y.sum() + tn / (n - y.sum()))
            if b > bal[j]:
                bal[j], acc[j] = b, (tp + tn) / n
        pols[j] = pol
    return acc, bal, pols


def test_twenty_thresholds_equal_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(13, 5)).round(1)  # rounding makes ties at thresholds likely
    x[:, 2] = -x[:, 2] - 2.0 * np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])  # anti unit
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    acc, bal, pols = _brute_force(x, y)
    got = threshold_scores(x, y)
    np.testing.assert_allclose(got["accuracy"].numpy(), acc, atol=1e-12)
    np.testing.assert_allclose(got["balanced_accuracy"].numpy(), bal, atol=1e-12)
    assert got["polarity"].tolist() == pols.tolist() and pols[2] == -1


def _brute_force_split(x, y, choose, test, n_thr: int = 20):
    """One held-out split in plain loops: per unit, polarity (AUC) and threshold (BA, rank cut
    points) from the choosing half, then accuracy, BA and AUC under that polarity on the test
    half; and the unit of best choosing-half BA."""
    xc, yc, xt, yt = x[choose], y[choose], x[test], y[test]
    out = {"accuracy": [], "balanced_accuracy": [], "auc": []}
    best = []
    for j in range(x.shape[1]):
        pol = 1 if roc_auc_score(yc, xc[:, j]) >= 0.5 else -1
        xs, n = np.sort(xc[:, j]), len(xc)
        scored = []
        for i in range(n_thr):
            r = min(int(np.round(i * n / n_thr)), n - 1)
            t = xs[0] if r == 0 else (xs[r - 1] + xs[r]) / 2
            pred = xc[:, j] >= t if pol == 1 else xc[:, j] <= t
            scored.append((0.5 * (pred[yc == 1].mean() + (~pred[yc == 0]).mean()), t))
        ba_c, t = max(scored, key=lambda s: s[0])  # the first of equal BAs
        best.append(ba_c)
        pred = xt[:, j] >= t if pol == 1 else xt[:, j] <= t
        tpr, tnr = pred[yt == 1].mean(), (~pred[yt == 0]).mean()
        out["accuracy"].append((pred == (yt == 1)).mean())
        out["balanced_accuracy"].append(0.5 * (tpr + tnr))
        auc = roc_auc_score(yt, xt[:, j])
        out["auc"].append(auc if pol == 1 else 1 - auc)
    return {k: np.array(v) for k, v in out.items()}, int(np.argmax(best))


def test_heldout_scores_equal_brute_force_on_each_split():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(26, 6)).round(1)  # ties at thresholds and in the AUC
    y = (np.arange(26) % 3 == 0).astype(np.int64)
    x[:, 3] += 1.2 * y
    x[:, 5] -= 1.0 * y  # a polarity -1 unit
    splits = stratified_halves(y, 4, seed=1)
    held = heldout_scores(x, y, splits=splits)
    per_split = [_brute_force_split(x, y, c.numpy(), t.numpy()) for c, t in splits]
    for key, got in (("accuracy", held.unit_accuracy),
                     ("balanced_accuracy", held.unit_balanced_accuracy),
                     ("auc", held.unit_auc)):
        want = np.mean([s[0][key] for s in per_split], axis=0)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    assert held.chosen.tolist() == [s[1] for s in per_split]


def test_one_outlier_does_not_blind_the_thresholds():
    """Evenly spaced thresholds between min and max would all fall below the outlier's gap."""
    x, y, det = _planted()
    x[0, det] = 1e6  # one huge response (image 0 is a positive)
    whole = threshold_scores(x, y)
    assert float(whole["balanced_accuracy"][det]) == 1.0
    held = heldout_scores(x, y, n_splits=10)
    assert held.best_balanced_accuracy == 1.0 and (held.chosen == det).all()


def test_ties_keep_the_polarity_of_the_auc():
    """A unit that is low for the class (many ties) is polarity -1 with AUC reported > 0.5; a
    constant unit is chance, never a detector."""
    y = np.array([1] * 20 + [0] * 20)
    low = np.where(y == 1, 0.0, 1.0)
    low[[0, 25]] = 0.5  # a few more tied values
    x = np.c_[low, np.zeros(40)]
    whole = threshold_scores(x, y)
    assert whole["polarity"].tolist() == [-1, 1]
    assert float(whole["auc"][0]) > 0.95 and float(whole["auc"][1]) == 0.5
    assert float(whole["balanced_accuracy"][1]) == 0.5
    held = heldout_scores(x, y, n_splits=10)
    assert (held.best_polarity == -1).all() and (held.chosen == 0).all()
    assert held.best_auc > 0.95 and float(held.unit_balanced_accuracy[1]) == 0.5


def test_groups_stay_on_one_side_of_every_split():
    y = np.array([1, 0] * 12)
    groups = np.repeat(np.arange(12), 2)  # an image and its twin
    for choose, test in stratified_halves(y, 8, seed=2, groups=groups):
        assert set(groups[choose.numpy()]).isdisjoint(groups[test.numpy()])
        assert len(choose) == 12 and int(y[choose.numpy()].sum()) == 6


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(40, 6)).astype(float)  # many ties
    y = rng.integers(0, 2, size=40)
    ours = roc_auc(x, y).numpy()
    ref = [roc_auc_score(y, x[:, j]) for j in range(x.shape[1])]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_splits_are_stratified_disjoint_and_seeded():
    y = np.array([1] * 7 + [0] * 20)
    splits = stratified_halves(y, 5, seed=4)
    for choose, test in splits:
        assert set(choose.tolist()).isdisjoint(test.tolist())
        assert len(choose) + len(test) == len(y)
        assert int(y[choose.numpy()].sum()) == 3 and int(y[test.numpy()].sum()) == 4
    again = stratified_halves(y, 5, seed=4)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(splits, again, strict=True))


def test_heldout_choice_never_reads_the_test_half():
    """Corrupting every test half (values and labels) leaves every choice unchanged."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 25))
    y = (rng.uniform(size=40) < 0.3).astype(np.int64)
    x[:, 4] += 1.5 * y  # a weak detector, so the choice is not trivial
    splits = stratified_halves(y, 1, seed=9)
    choose, test = (s.numpy() for s in splits[0])
    base = heldout_scores(x, y, splits=splits)
    assert torch.equal(base.chosen, heldout_scores(x, y, n_splits=1, seed=9).chosen)
    x2, y2 = x.copy(), y.copy()
    x2[test] = rng.normal(size=(len(test), 25)) * 100.0
    y2[test] = 1 - y[test]  # every test label flipped
    bad = heldout_scores(x2, y2, splits=splits)
    assert torch.equal(base.chosen, bad.chosen)
    assert torch.equal(base.best_polarity, bad.best_polarity)
    assert torch.equal(base.best_threshold, bad.best_threshold)  # grid from the choosing half
    # the measurement does read the test half: it changes
    assert base.best_balanced_accuracy != bad.best_balanced_accuracy


def test_a_fixed_split_chooses_on_its_part_and_measures_on_the_rest():
    """One fixed (choose, test) pair: the same figures as brute force on that division, and
    the set-level spread is the group bootstrap of the chosen unit on the test half."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(48, 7)).round(1)
    y = (np.arange(48) % 2 == 0).astype(np.int64)  # a face and its twin: one group of two
    groups = np.arange(48) // 2
    x[:, 2] += 1.5 * y
    choose_mask = groups < 10  # the first 10 groups choose, the other 14 measure
    (choose, test), = fixed_split(choose_mask)
    assert choose.tolist() == np.flatnonzero(choose_mask).tolist()
    assert test.tolist() == np.flatnonzero(~choose_mask).tolist()
    held = heldout_scores(x, y, splits=fixed_split(choose_mask), groups=groups)
    want, chosen = _brute_force_split(x, y, choose.numpy(), test.numpy())
    assert held.chosen.tolist() == [chosen]
    np.testing.assert_allclose(held.best_balanced_accuracy, want["balanced_accuracy"][chosen],
                               atol=1e-12)
    std = group_bootstrap_std(torch.as_tensor(x[test.numpy(), chosen]),
                              torch.as_tensor(y[test.numpy()]).bool(), groups[test.numpy()],
                              int(held.best_polarity[0]), float(held.best_threshold[0]))
    assert held.best_balanced_accuracy_std == std > 0
    no_groups = heldout_scores(x, y, splits=fixed_split(choose_mask))
    assert no_groups.best_balanced_accuracy_std == 0.0  # one split alone has no spread


def test_group_bootstrap_std_equals_resampling_by_hand():
    """The same draws, each resample's images listed and scored by scikit-learn."""
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(12), 3)
    y = np.tile([1, 0, 0], 12).astype(bool)
    x = rng.normal(size=36) + 0.8 * y
    got = group_bootstrap_std(torch.as_tensor(x), torch.as_tensor(y), groups, -1, 0.3,
                              n_boot=200, seed=5)
    draws = torch.randint(12, (200, 12), generator=torch.Generator().manual_seed(5)).numpy()
    pred = x <= 0.3  # polarity -1
    bas = []
    for d in draws:
        rows = np.concatenate([np.flatnonzero(groups == g) for g in d])
        bas.append(balanced_accuracy_score(y[rows], pred[rows]))
    np.testing.assert_allclose(got, np.std(bas), atol=1e-12)


def test_rejects_single_class():
    with pytest.raises(ValueError, match="both classes"):
        threshold_scores(np.ones((4, 2)), np.zeros(4))
