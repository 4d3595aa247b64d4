"""Selectivity protocols: exact answers on tiny problems, brute force, no peeking, sklearn AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.neurons.selectivity import (
    best_unit_score,
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
    """Per unit, per polarity, per threshold, per image: plain loops."""
    n, u = x.shape
    acc, bal = np.zeros(u), np.zeros(u)
    for j in range(u):
        lo, hi = x[:, j].min(), x[:, j].max()
        for i, pol in itertools.product(range(n_thr), (1, -1)):
            t = lo + (hi - lo) * i / (n_thr - 1)
            pred = [(x[m, j] >= t) if pol == 1 else (x[m, j] <= t) for m in range(n)]
            tp = sum(p and yy for p, yy in zip(pred, y, strict=True))
            tn = sum((not p) and (not yy) for p, yy in zip(pred, y, strict=True))
            acc[j] = max(acc[j], (tp + tn) / n)
            bal[j] = max(bal[j], 0.5 * (tp / y.sum() + tn / (n - y.sum())))
    return acc, bal


def test_twenty_thresholds_equal_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(13, 5)).round(1)  # rounding makes ties at thresholds likely
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    acc, bal = _brute_force(x, y)
    got = threshold_scores(x, y)
    np.testing.assert_allclose(got["accuracy"].numpy(), acc, atol=1e-12)
    np.testing.assert_allclose(got["balanced_accuracy"].numpy(), bal, atol=1e-12)


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


def test_rejects_single_class():
    with pytest.raises(ValueError, match="both classes"):
        threshold_scores(np.ones((4, 2)), np.zeros(4))
