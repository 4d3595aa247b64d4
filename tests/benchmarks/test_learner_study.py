"""The learner study's scoring (against brute force and scikit-learn) and its twin probe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.benchmarks import load

scoring = load("learner_scoring")


def brute_best_ba(r: np.ndarray, y: np.ndarray) -> float:
    cands = np.unique(r)
    best = 0.0
    for c in np.concatenate([cands - 0.5, [cands.max() + 1]]):
        p = r > c
        best = max(best, 0.5 * (p[y == 1].mean() + (~p[y == 0]).mean()))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_and_auc_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    y[:2] = (1, 0)
    r = rng.integers(0, 6, (40, 3)).astype(float)  # many ties
    r[0, 0] = 100.0  # an outlier
    ba, t = scoring.best_thresholds(r, y)
    auc = scoring.auc_columns(r, y)
    for k in range(3):
        assert ba[k] == pytest.approx(brute_best_ba(r[:, k], y))
        assert scoring.balanced_accuracy(r[:, k] > t[k], y) == pytest.approx(ba[k])
        assert auc[k] == pytest.approx(roc_auc_score(y, r[:, k]))


def test_held_out_keeps_polarity_plus_one_and_reports_the_other_half():
    """An anti-face unit (fires less for faces) must not win; the chosen unit's report-half
    figures come from the report half only."""
    rng = np.random.default_rng(1)
    n = 200
    y = np.tile([1, 0], n // 2)
    probe = {"label": y, "tune": np.arange(n) < n // 2, "side": rng.uniform(25, 40, n),
             "centre": rng.uniform(0, 64, (n, 2)), "identity": np.repeat(np.arange(50), 4)}
    face = y + rng.normal(0, 0.8, n)
    anti = -3 * y + rng.normal(0, 0.1, n)
    res = scoring.held_out(np.stack([anti, face], 1), probe)
    assert res["unit"] == 1
    rep = ~probe["tune"]
    assert res["auc"] == pytest.approx(roc_auc_score(y[rep], face[rep]))


@pytest.mark.slow
def test_twins_differ_only_inside_the_pasted_box():
    data = load("learner_data")
    import skimage.data
    import torch

    lfw = torch.from_numpy(skimage.data.lfw_subset().astype(np.float32))
    probe = data.twin_probe(lfw, seed=0, per_face=1)
    imgs, side, centre = probe["images"], probe["side"], probe["centre"]
    for i in range(0, 20, 2):
        diff = (imgs[i] - imgs[i + 1]).abs() > 0
        ys, xs = np.nonzero(diff.numpy())
        y0, x0 = centre[i] - side[i] / 2
        assert ys.min() >= y0 and ys.max() < y0 + side[i]
        assert xs.min() >= x0 and xs.max() < x0 + side[i]
        assert probe["identity"][i] == probe["identity"][i + 1] and probe["label"][i] == 1
