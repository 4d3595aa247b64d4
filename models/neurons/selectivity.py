"""How well single units detect a class: Le et al.'s threshold protocol and a held-out one.

A unit's responses ``x (N,)`` to a labelled probe ``y (N,)`` (1 = the class, e.g. faces) become a
classifier ``predict 1 if polarity * (x - t) >= 0`` (polarity +1: ``x >= t``; polarity -1:
``x <= t``). Every function works on all units at once: ``values (N, U)`` -> arrays ``(U,)``.

Le et al. (ICML 2012, section 4.2) report, for each neuron, the best accuracy over 20 thresholds
evenly spaced between its minimum and maximum response on the whole test set
(:func:`threshold_scores`). Choosing the threshold (and, over many units, the unit) on the same
images it is scored on flatters the winner, and the probes are unbalanced (always-negative
scores ``n_neg / N``), so :func:`heldout_scores` also reports balanced accuracy

    BA = (TP / P + TN / Nn) / 2

with polarity and threshold (and, for a set of units, the unit) chosen on one stratified half of
the probe and measured on the other, over ``n_splits`` random splits (mean and std).

ROC AUC is the Mann-Whitney statistic ``P(x_pos > x_neg) + P(x_pos = x_neg) / 2`` (ties count a
half, as in ``sklearn.metrics.roc_auc_score``).

Counting is by ``torch.searchsorted`` over each unit's sorted positive and negative responses:
``O(U (N log N + T log N))`` for ``T`` thresholds, no Python loop over units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _as_float(values) -> Tensor:
    """(N, U) float64 tensor (a 1-D input is one unit)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    return x[:, None] if x.dim() == 1 else x


def _as_labels(labels, n: int) -> Tensor:
    """(N,) bool tensor with both classes present."""
    y = torch.as_tensor(labels).reshape(-1).to(torch.bool)
    if y.numel() != n:
        raise ValueError(f"{y.numel()} labels for {n} responses")
    if bool(y.all()) or not bool(y.any()):
        raise ValueError("labels must contain both classes (1 = positive, 0 = negative)")
    return y


def threshold_grid(x: Tensor, n_thresholds: int = 20) -> Tensor:
    """(U, T): ``n_thresholds`` values evenly spaced from each unit's min to its max in ``x``."""
    lo, hi = x.min(0).values, x.max(0).values  # (U,)
    frac = torch.linspace(0.0, 1.0, n_thresholds, dtype=x.dtype, device=x.device)
    return lo[:, None] + (hi - lo)[:, None] * frac[None, :]


def _sorted_by_class(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Each unit's positive and negative responses, sorted: (U, P) and (U, Nn)."""
    pos = x[y].T.contiguous().sort(dim=1).values
    neg = x[~y].T.contiguous().sort(dim=1).values
    return pos, neg


def _rates(pos: Tensor, neg: Tensor, thr: Tensor) -> dict[str, Tensor]:
    """True-positive and true-negative rates (2, U, T) for polarity +1 (row 0) and -1 (row 1)."""
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    pos_lt = torch.searchsorted(pos, thr, side="left")  # positives < t
    pos_le = torch.searchsorted(pos, thr, side="right")  # positives <= t
    neg_lt = torch.searchsorted(neg, thr, side="left")
    neg_le = torch.searchsorted(neg, thr, side="right")
    tpr = torch.stack([n_pos - pos_lt, pos_le]).double() / n_pos  # +1: x >= t; -1: x <= t
    tnr = torch.stack([neg_lt, n_neg - neg_le]).double() / n_neg
    acc = (tpr * n_pos + tnr * n_neg) / (n_pos + n_neg)
    return {"accuracy": acc, "balanced_accuracy": 0.5 * (tpr + tnr)}


def _auc_sorted(pos: Tensor, neg: Tensor) -> Tensor:
    """(U,) Mann-Whitney AUC of polarity +1 from sorted class responses (ties count 1/2)."""
    below = torch.searchsorted(neg, pos, side="left").double()
    below_eq = torch.searchsorted(neg, pos, side="right").double()
    return 0.5 * (below + below_eq).sum(1) / (pos.shape[1] * neg.shape[1])


def roc_auc(values, labels) -> Tensor:
    """(U,) ROC AUC of each unit's responses ``values (N, U)`` as a score for ``labels (N,)``."""
    x = _as_float(values)
    return _auc_sorted(*_sorted_by_class(x, _as_labels(labels, x.shape[0])))


def _pick(table: Tensor, flat: Tensor) -> Tensor:
    """``table (2, U, T)`` at flat indices ``flat (U,)`` over its (polarity, threshold) axes."""
    t = table.permute(1, 0, 2).reshape(table.shape[1], -1)
    return t.gather(1, flat[:, None])[:, 0]


def threshold_scores(values, labels, n_thresholds: int = 20) -> dict[str, Tensor]:
    """Le et al.'s protocol on the whole probe, per unit.

    Returns
    -------
    dict of (U,) tensors: ``accuracy`` and ``balanced_accuracy`` (each the best over both
    polarities and the ``n_thresholds`` thresholds of :func:`threshold_grid`), ``polarity``
    (+1/-1) and ``threshold`` of the best balanced accuracy, and ``auc`` under that polarity.
    """
    x = _as_float(values)
    y = _as_labels(labels, x.shape[0])
    pos, neg = _sorted_by_class(x, y)
    thr = threshold_grid(x, n_thresholds)
    r = _rates(pos, neg, thr)
    best = r["balanced_accuracy"].permute(1, 0, 2).reshape(x.shape[1], -1).argmax(1)
    polarity = 1 - 2 * torch.div(best, n_thresholds, rounding_mode="floor")
    auc = _auc_sorted(pos, neg)
    return {
        "accuracy": r["accuracy"].amax((0, 2)),
        "balanced_accuracy": r["balanced_accuracy"].amax((0, 2)),
        "polarity": polarity,
        "threshold": thr.gather(1, (best % n_thresholds)[:, None])[:, 0],
        "auc": torch.where(polarity > 0, auc, 1.0 - auc),
    }


def stratified_halves(labels, n_splits: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``n_splits`` random (choose, test) index pairs, each class halved (floor to choose)."""
    y = torch.as_tensor(labels).reshape(-1).to(torch.bool)
    g = torch.Generator().manual_seed(seed)
    splits = []
    for _ in range(n_splits):
        choose, test = [], []
        for idx in (torch.nonzero(y)[:, 0], torch.nonzero(~y)[:, 0]):
            perm = idx[torch.randperm(idx.numel(), generator=g)]
            half = idx.numel() // 2
            choose.append(perm[:half])
            test.append(perm[half:])
        splits.append((torch.cat(choose).sort().values, torch.cat(test).sort().values))
    return splits


@dataclass(frozen=True)
class HeldOut:
    """Held-out scores. Per unit (``(U,)`` means over splits): ``unit_*``. For the set of units
    (the unit also chosen on the choosing half): ``best_*`` floats and ``chosen (n_splits,)``."""

    unit_accuracy: Tensor
    unit_balanced_accuracy: Tensor
    unit_balanced_accuracy_std: Tensor
    unit_auc: Tensor
    chosen: Tensor
    best_accuracy: float
    best_balanced_accuracy: float
    best_balanced_accuracy_std: float
    best_auc: float
    best_polarity: Tensor
    best_threshold: Tensor


def _split_scores(x: Tensor, y: Tensor, choose: Tensor, test: Tensor, n_thresholds: int):
    """One split: per unit (U,) test scores of the (polarity, threshold) best on ``choose``,
    and the set-level choice (unit, its polarity and threshold)."""
    xc, yc, xt, yt = x[choose], y[choose], x[test], y[test]
    thr = threshold_grid(xc, n_thresholds)  # from the choosing half only
    rc = _rates(*_sorted_by_class(xc, yc), thr)
    pos_t, neg_t = _sorted_by_class(xt, yt)
    rt = _rates(pos_t, neg_t, thr)
    ba_c = rc["balanced_accuracy"].permute(1, 0, 2).reshape(x.shape[1], -1)
    flat = ba_c.argmax(1)  # (U,) over (polarity, threshold)
    polarity = 1 - 2 * torch.div(flat, n_thresholds, rounding_mode="floor")
    auc_t = _auc_sorted(pos_t, neg_t)
    per_unit = {
        "accuracy": _pick(rt["accuracy"], flat),
        "balanced_accuracy": _pick(rt["balanced_accuracy"], flat),
        "auc": torch.where(polarity > 0, auc_t, 1.0 - auc_t),
    }
    unit = int(ba_c.max(1).values.argmax())
    return per_unit, unit, int(polarity[unit]), float(thr[unit, flat[unit] % n_thresholds])


def heldout_scores(values, labels, n_splits: int = 20, n_thresholds: int = 20,
                   seed: int = 0, splits: list[tuple[Tensor, Tensor]] | None = None) -> HeldOut:
    """The held-out protocol over ``n_splits`` stratified halves (see the module docstring).

    On each split, each unit's polarity and threshold (from a grid over the choosing half's
    range) maximise balanced accuracy on the choosing half and are scored on the test half; the
    set-level choice takes the unit with the best choosing-half balanced accuracy. The test half
    is never read before the choice. ``splits`` (choose, test) index pairs replace the
    :func:`stratified_halves` of ``(labels, n_splits, seed)``.
    """
    x = _as_float(values)
    y = _as_labels(labels, x.shape[0])
    rows, chosen, pols, thrs = [], [], [], []
    if splits is None:
        splits = stratified_halves(y, n_splits, seed)
    for choose, test in splits:
        per_unit, unit, pol, thr = _split_scores(x, y, choose, test, n_thresholds)
        rows.append(per_unit)
        chosen.append(unit)
        pols.append(pol)
        thrs.append(thr)
    stack = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}  # (S, U)
    idx = torch.tensor(chosen)
    at = {k: v.gather(1, idx[:, None])[:, 0] for k, v in stack.items()}  # (S,)
    return HeldOut(
        unit_accuracy=stack["accuracy"].mean(0),
        unit_balanced_accuracy=stack["balanced_accuracy"].mean(0),
        unit_balanced_accuracy_std=stack["balanced_accuracy"].std(0, correction=0),
        unit_auc=stack["auc"].mean(0),
        chosen=idx,
        best_accuracy=float(at["accuracy"].mean()),
        best_balanced_accuracy=float(at["balanced_accuracy"].mean()),
        best_balanced_accuracy_std=float(at["balanced_accuracy"].std(correction=0)),
        best_auc=float(at["auc"].mean()),
        best_polarity=torch.tensor(pols),
        best_threshold=torch.tensor(thrs, dtype=torch.float64),
    )


def best_unit_score(values, labels, n_splits: int = 20, n_thresholds: int = 20,
                    seed: int = 0) -> dict:
    """The contract's SCORE of a set of units plus ``index`` (the unit chosen most often on the
    choosing halves) and its per-unit tables (for rankings).

    ``heldout_*`` come from the set-level protocol (unit chosen per split on the choosing half);
    ``accuracy``, ``balanced_accuracy``, ``auc`` and ``polarity`` are Le et al.'s protocol for
    ``index`` on the whole probe.
    """
    whole = threshold_scores(values, labels, n_thresholds)
    held = heldout_scores(values, labels, n_splits, n_thresholds, seed)
    index = int(torch.mode(held.chosen).values)
    score = {
        "index": index,
        "accuracy": float(whole["accuracy"][index]),
        "balanced_accuracy": float(whole["balanced_accuracy"][index]),
        "auc": float(whole["auc"][index]),
        "polarity": int(whole["polarity"][index]),
        "heldout_accuracy": held.best_accuracy,
        "heldout_balanced_accuracy": held.best_balanced_accuracy,
        "heldout_balanced_accuracy_std": held.best_balanced_accuracy_std,
        "heldout_auc": held.best_auc,
        "heldout_chosen_fraction": float((held.chosen == index).double().mean()),
    }
    return {"score": score, "whole": whole, "heldout": held}
