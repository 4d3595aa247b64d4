"""Held-out scoring of units for benchmarks/learner_study.py (polarity +1: a unit must fire
more for faces).

A unit and its threshold are chosen on the tuning half of the probe (the threshold that
maximises balanced accuracy there, a midpoint between two distinct responses; the unit with the
best tuning balanced accuracy, ties to the higher tuning AUC) and reported on the other half.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler


def best_thresholds(r: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (columns of ``r`` (n, K)), the best balanced accuracy of ``r > t`` and its t.

    Sorting each column descending, predicting the top ``j`` positive gives
    BA_j = (TP_j / P + 1 - FP_j / N) / 2; only cuts between distinct values count.
    """
    order = np.argsort(-r, axis=0, kind="stable")
    rs = np.take_along_axis(r, order, 0)  # (n, K) descending
    ys = y[order]  # (n, K)
    P, N = y.sum(), (1 - y).sum()
    tp, fp = np.cumsum(ys, 0), np.cumsum(1 - ys, 0)
    ba = 0.5 * (tp / P + 1 - fp / N)  # cut after row j
    valid = np.vstack([rs[:-1] > rs[1:], np.ones((1, r.shape[1]), bool)])
    ba = np.where(valid, ba, -np.inf)
    j = ba.argmax(0)
    cols = np.arange(r.shape[1])
    below = np.where(j + 1 < len(r), rs[np.minimum(j + 1, len(r) - 1), cols], -np.inf)
    return ba[j, cols], (rs[j, cols] + below) / 2


def auc_columns(r: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of every column of ``r`` (n, K) with polarity +1 (ties count a half)."""
    from scipy.stats import rankdata

    ranks = rankdata(r, axis=0)
    P, N = y.sum(), (1 - y).sum()
    return (ranks[y == 1].sum(0) - P * (P + 1) / 2) / (P * N)


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """(TPR + TNR) / 2."""
    return float(0.5 * (pred[y == 1].mean() + (~pred[y == 0]).mean()))


def choose_unit(r: np.ndarray, y: np.ndarray) -> tuple[int, float]:
    """(unit, threshold) chosen on one half: best balanced accuracy, ties to AUC."""
    ba, t = best_thresholds(r, y)
    key = np.lexsort((auc_columns(r, y), ba))  # last key primary
    unit = int(key[-1])
    return unit, float(t[unit])


def held_out(r: np.ndarray, probe: dict) -> dict:
    """Choose on the tuning half, report on the other: unit, BA, AUC, per size bin and quadrant."""
    y, tune = probe["label"], probe["tune"]
    unit, t = choose_unit(r[tune], y[tune])
    rep = ~tune
    pred = r[rep, unit] > t
    yr = y[rep]
    out = {
        "unit": unit,
        "threshold": t,
        "tune_balanced_accuracy": balanced_accuracy(r[tune, unit] > t, y[tune]),
        "balanced_accuracy": balanced_accuracy(pred, yr),
        "auc": float(roc_auc_score(yr, r[rep, unit])),
    }
    side, (cy, cx) = probe["side"][rep], probe["centre"][rep].T
    bins = {"25-29": side < 30, "30-34": (side >= 30) & (side < 35), "35-40": side >= 35}
    out["by_size"] = {k: balanced_accuracy(pred[m], yr[m]) for k, m in bins.items()}
    quads = {f"{a}{b}": ((cy < 32) == (a == "top")) & ((cx < 32) == (b == "left"))
             for a in ("top", "bottom") for b in ("left", "right")}
    out["by_quadrant"] = {k: balanced_accuracy(pred[m], yr[m]) for k, m in quads.items()}
    return out


def stability(r: np.ndarray, probe: dict, n_splits: int = 20, seed: int = 0) -> dict:
    """Random halvings of the 50 probe identities: the share of splits choosing the modal unit,
    and the held-out balanced accuracy over splits (mean, sd)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(probe["identity"])
    units, bas = [], []
    for _ in range(n_splits):
        half = rng.permutation(ids)[: len(ids) // 2]
        tune = np.isin(probe["identity"], half)
        unit, t = choose_unit(r[tune], probe["label"][tune])
        units.append(unit)
        bas.append(balanced_accuracy(r[~tune, unit] > t, probe["label"][~tune]))
    vals, counts = np.unique(units, return_counts=True)
    return {
        "modal_unit": int(vals[counts.argmax()]),
        "share": float(counts.max() / n_splits),
        "balanced_accuracy_mean": float(np.mean(bas)),
        "balanced_accuracy_sd": float(np.std(bas)),
    }


def logistic_held_out(features: np.ndarray, probe: dict) -> dict:
    """A logistic regression on ``features`` fitted on the tuning half, scored on the other."""
    y, tune = probe["label"], probe["tune"]
    scaler = StandardScaler().fit(features[tune])
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(features[tune]), y[tune])
    p = clf.predict_proba(scaler.transform(features[~tune]))[:, 1]
    return {"balanced_accuracy": balanced_accuracy(p > 0.5, y[~tune]),
            "auc": float(roc_auc_score(y[~tune], p))}


def tuning_half_only(r: np.ndarray, probe: dict) -> float:
    """A setting's figure that never sees the reporting half: within the tuning identities,
    choose on one half and score on the other, both ways, and average the balanced accuracy."""
    tune = probe["tune"]
    ids = np.unique(probe["identity"][tune])
    first = np.isin(probe["identity"], ids[: len(ids) // 2])
    second = tune & ~first
    y = probe["label"]
    bas = []
    for a, b in ((first, second), (second, first)):
        unit, t = choose_unit(r[a], y[a])
        bas.append(balanced_accuracy(r[b, unit] > t, y[b]))
    return float(np.mean(bas))
