"""How well single units detect a class: Le et al.'s threshold protocol and a held-out one.

A unit's responses ``x (N,)`` to a labelled probe ``y (N,)`` (1 = the class, e.g. faces) become a
classifier ``predict 1 if polarity * (x - t) >= 0`` (polarity +1: ``x >= t``; polarity -1:
``x <= t``). Every function works on all units at once: ``values (N, U)`` -> arrays ``(U,)``.

Le et al. (ICML 2012, section 4.2) report, for each neuron, the best accuracy over 20 thresholds
on the whole test set (:func:`threshold_scores`). Here the thresholds are cut points at evenly
spaced ranks of the unit's responses (quantiles, :func:`threshold_grid`; not values evenly
spaced between its minimum and maximum, which one outlier makes useless), and the polarity is
the one whose ROC AUC is >= 0.5 (not the first of a tie in accuracy, which can report a unit of
AUC 0.96 at 0.04). Choosing the threshold (and, over many
units, the unit) on the same images it is scored on flatters the winner, and the probes are
unbalanced (always-negative scores ``n_neg / N``), so :func:`heldout_scores` also reports
balanced accuracy

    BA = (TP / P + TN / Nn) / 2

with polarity (by AUC), threshold (by BA, among the rank cut points) and, for a set of units, the
unit (by BA) chosen on one half of the probe and measured on the other, over ``n_splits``
random splits (mean and std). The halves are stratified by class and keep each group (e.g. a
face and its matched twin) on one side; or one fixed division (:func:`fixed_split`).

ROC AUC is the Mann-Whitney statistic ``P(x_pos > x_neg) + P(x_pos = x_neg) / 2`` (ties count a
half, as in ``sklearn.metrics.roc_auc_score``).

Counting is by ``torch.searchsorted`` over each unit's sorted positive and negative responses:
``O(U (N log N + T log N))`` for ``T`` thresholds, no Python loop over units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.kernels import split_scores as split_kernel


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


def _sort_rows(x: Tensor) -> Tensor:
    """Each row of ``x (U, N)`` sorted ascending, in a contiguous copy."""
    return _sort_rows_of(x.clone(memory_format=torch.contiguous_format))


def _sort_rows_of(x: Tensor) -> Tensor:
    """Each row of a contiguous ``x (U, N)`` sorted ascending, in place (numpy's sort: many
    times faster than torch's on CPU for many short rows)."""
    rows = x.cpu().numpy()
    rows.sort(axis=1)
    return torch.from_numpy(rows).to(x.device)


def threshold_grid(x: Tensor, n_thresholds: int = 20) -> Tensor:
    """(U, T): each unit's cut points between ``T`` equal-count groups of its responses
    ``x (N, U)``: for ranks ``r_j = round(j N / T)``, ``j = 0..T-1``, the midpoint of the sorted
    responses ``x_(r_j - 1)`` and ``x_(r_j)`` (``j = 0``: the minimum, "all positive"). Set by
    ranks, one outlier cannot crowd them; tied responses give repeated thresholds."""
    return _grid_of_sorted(_sort_rows(x.T), n_thresholds)


def _grid_of_sorted(xs: Tensor, n_thresholds: int) -> Tensor:
    """:func:`threshold_grid` from each unit's responses sorted, ``xs (U, N)``."""
    r = _cut_ranks(xs.shape[1], n_thresholds).to(xs.device)
    lower = xs[:, (r - 1).clamp_min(0)]
    return torch.where((r == 0)[None, :], xs[:, :1], 0.5 * (lower + xs[:, r])).contiguous()


def polarity_from_auc(auc: Tensor) -> Tensor:
    """(U,) +1 where the polarity +1 AUC is >= 0.5 (the unit fires more for the class), else -1."""
    return torch.where(auc >= 0.5, 1, -1)


def _best_threshold(ba: Tensor, polarity: Tensor) -> tuple[Tensor, Tensor]:
    """From ``ba (2, U, T)`` (rows: polarity +1, -1), each unit's best BA and threshold index
    under its ``polarity (U,)``."""
    row = ba.gather(0, (polarity < 0).long()[None, :, None].expand(1, *ba.shape[1:]))[0]
    best = row.max(1)
    return best.values, best.indices


def _sorted_by_class(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Each unit's positive and negative responses, sorted: (U, P) and (U, Nn)."""
    pos = _sort_rows(x[y].T)
    neg = _sort_rows(x[~y].T)
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


def _at(table: Tensor, polarity: Tensor, t_idx: Tensor) -> Tensor:
    """``table (2, U, T)`` at each unit's (polarity, threshold index): (U,)."""
    row = (polarity < 0).long()
    return table[row, torch.arange(table.shape[1]), t_idx]


def threshold_scores(values, labels, n_thresholds: int = 20) -> dict[str, Tensor]:
    """Le et al.'s protocol on the whole probe, per unit, with rank (quantile) thresholds.

    Returns
    -------
    dict of (U,) tensors: ``polarity`` (+1/-1, by AUC), ``auc`` under that polarity (>= 0.5),
    ``balanced_accuracy`` (best over the :func:`threshold_grid` thresholds under that
    polarity), ``threshold`` of it and ``accuracy`` at that threshold.
    """
    x = _as_float(values)
    y = _as_labels(labels, x.shape[0])
    pos, neg = _sorted_by_class(x, y)
    thr = threshold_grid(x, n_thresholds)
    r = _rates(pos, neg, thr)
    auc = _auc_sorted(pos, neg)
    polarity = polarity_from_auc(auc)
    ba, t_idx = _best_threshold(r["balanced_accuracy"], polarity)
    return {
        "accuracy": _at(r["accuracy"], polarity, t_idx),
        "balanced_accuracy": ba,
        "polarity": polarity,
        "threshold": thr.gather(1, t_idx[:, None])[:, 0],
        "auc": torch.where(polarity > 0, auc, 1.0 - auc),
    }


def stratified_halves(labels, n_splits: int, seed: int = 0,
                      groups=None) -> list[tuple[Tensor, Tensor]]:
    """``n_splits`` random (choose, test) index pairs. Groups (default: one per image) are
    stratified by whether they hold a positive, and each stratum's groups are halved (floor to
    choose); a group's images all fall on its side."""
    y = torch.as_tensor(labels).reshape(-1).to(torch.bool)
    g_ids = (torch.arange(y.numel()) if groups is None
             else torch.as_tensor(groups).reshape(-1).long())
    uniq, inverse = torch.unique(g_ids, return_inverse=True)
    has_pos = torch.zeros(len(uniq), dtype=torch.bool).index_put_((inverse,), y, accumulate=True)
    gen = torch.Generator().manual_seed(seed)
    splits = []
    for _ in range(n_splits):
        side = torch.zeros(len(uniq), dtype=torch.bool)  # True = choose
        for stratum in (torch.nonzero(has_pos)[:, 0], torch.nonzero(~has_pos)[:, 0]):
            perm = stratum[torch.randperm(stratum.numel(), generator=gen)]
            side[perm[: stratum.numel() // 2]] = True
        on_choose = side[inverse]
        splits.append((torch.nonzero(on_choose)[:, 0], torch.nonzero(~on_choose)[:, 0]))
    return splits


def fixed_split(choose) -> list[tuple[Tensor, Tensor]]:
    """The one (choose, test) pair of a fixed division of the probe: the images where
    ``choose`` (N,) bool is True choose the unit, polarity and threshold, the others measure
    them (e.g. a probe's tuning part against its reporting part: other identities, fixed in
    advance, rather than random halves of one part)."""
    c = torch.as_tensor(choose).reshape(-1).to(torch.bool)
    return [(torch.nonzero(c)[:, 0], torch.nonzero(~c)[:, 0])]


def group_bootstrap_std(x: Tensor, y: Tensor, groups, polarity: int, threshold: float,
                        n_boot: int = 1000, seed: int = 0) -> float:
    """Std of one fixed classifier's balanced accuracy (``x >= threshold`` for polarity +1,
    ``x <= threshold`` for -1) over ``n_boot`` resamples of ``groups`` with replacement, a
    group's images together: the sampling spread of a figure measured once, on one test set
    (:func:`fixed_split`). ``x`` (N,), ``y`` (N,) bool, ``groups`` (N,) ids; resamples that
    lack a class are skipped."""
    pred = x >= threshold if polarity > 0 else x <= threshold
    right = pred == y
    _, g = torch.unique(torch.as_tensor(groups).reshape(-1), return_inverse=True)
    n_g = int(g.max()) + 1

    def per_group(mask: Tensor) -> Tensor:  # (G,) images of each group where ``mask``
        return torch.zeros(n_g, dtype=torch.float64).index_add_(0, g, mask.double())

    pos, neg, tp, tn = per_group(y), per_group(~y), per_group(y & right), per_group(~y & right)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(n_g, (n_boot, n_g), generator=gen)
    counts = torch.zeros(n_boot, n_g, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(n_boot, n_g, dtype=torch.float64))  # (B, G) times drawn
    p, n = counts @ pos, counts @ neg
    ok = (p > 0) & (n > 0)
    ba = 0.5 * ((counts @ tp)[ok] / p[ok] + (counts @ tn)[ok] / n[ok])
    return float(ba.std(correction=0))


@dataclass(frozen=True)
class HeldOut:
    """Held-out scores. Per unit (``(U,)`` means over splits): ``unit_*``. For the set of units
    (the unit also chosen on the choosing half): ``best_*`` floats, and per split
    ``chosen``, ``best_polarity``, ``best_threshold``, ``best_split_balanced_accuracy`` (S,)."""

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
    best_split_balanced_accuracy: Tensor


def _scores_at(pos: Tensor, neg: Tensor, polarity: Tensor, thr: Tensor) -> dict[str, Tensor]:
    """(U,) accuracy and balanced accuracy of each unit's one classifier ``polarity * (x -
    thr) >= 0`` on its sorted class responses ``pos (U, P)`` and ``neg (U, Nn)``."""
    rates = _rates(pos, neg, thr[:, None])  # (2, U, 1) per polarity
    zeros = torch.zeros_like(polarity, dtype=torch.long)
    return {k: _at(v, polarity, zeros) for k, v in rates.items()}


def _check_halves(y: Tensor, choose: Tensor, test: Tensor) -> None:
    """Both classes on both sides of a split, or one line saying why not."""
    yc, yt = y[choose], y[test]
    if bool(yc.all()) or not bool(yc.any()) or bool(yt.all()) or not bool(yt.any()):
        raise ValueError("a split half lacks a class: the probe needs at least two groups "
                         "of each class")


def _cut_ranks(n: int, n_thresholds: int) -> Tensor:
    """(T,) ranks ``r_j = round(j n / T)`` of :func:`threshold_grid`'s cut points."""
    r = torch.round(torch.arange(n_thresholds, dtype=torch.float64) * n / n_thresholds).long()
    return r.clamp(0, n - 1)


def _split_scores(xt_rows: Tensor, y: Tensor, choose: Tensor, test: Tensor,
                  n_thresholds: int) -> dict[str, Tensor]:
    """One split of the units' responses ``xt_rows (U, N)`` (a unit a row), in torch: per unit
    (U,) :data:`models.kernels.split_scores.FIELDS`: test scores of the polarity (by AUC) and
    threshold (by BA) chosen on ``choose``, and the choosing half's BA at that threshold."""

    def sorted_rows(index: Tensor) -> Tensor:
        return _sort_rows_of(xt_rows.index_select(1, index.to(xt_rows.device)))

    yc, yt = y[choose], y[test]
    thr = _grid_of_sorted(sorted_rows(choose), n_thresholds)  # from the choosing half only
    pos_c, neg_c = sorted_rows(choose[yc]), sorted_rows(choose[~yc])
    polarity = polarity_from_auc(_auc_sorted(pos_c, neg_c))
    ba_c, t_idx = _best_threshold(_rates(pos_c, neg_c, thr)["balanced_accuracy"], polarity)
    chosen_thr = thr.gather(1, t_idx[:, None])[:, 0]  # (U,)
    pos_t, neg_t = sorted_rows(test[yt]), sorted_rows(test[~yt])
    auc_t = _auc_sorted(pos_t, neg_t)
    return {**_scores_at(pos_t, neg_t, polarity, chosen_thr),
            "auc": torch.where(polarity > 0, auc_t, 1.0 - auc_t),
            "choose_balanced_accuracy": ba_c, "polarity": polarity, "threshold": chosen_thr}


def _all_split_scores(xt_rows: Tensor, y: Tensor, splits: list[tuple[Tensor, Tensor]],
                      n_thresholds: int) -> dict[str, Tensor]:
    """(S, U) per-split scores of every unit: numba's one sort per unit
    (:mod:`models.kernels.split_scores`) on CPU, torch's gathers and sorts per split elsewhere;
    the same values either way."""
    for choose, test in splits:
        _check_halves(y, choose, test)
    if split_kernel.available(xt_rows):
        ranks = torch.stack([_cut_ranks(len(c), n_thresholds) for c, _ in splits])
        return split_kernel.split_scores(xt_rows, y, splits, ranks)
    rows = [_split_scores(xt_rows, y, c, t, n_thresholds) for c, t in splits]
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def heldout_scores(values, labels, n_splits: int = 20, n_thresholds: int = 20,
                   seed: int = 0, splits: list[tuple[Tensor, Tensor]] | None = None,
                   groups=None) -> HeldOut:
    """The held-out protocol over ``n_splits`` halves (see the module docstring).

    On each split, each unit's polarity (AUC >= 0.5 on the choosing half) and threshold (the
    choosing half's rank cut point of best balanced accuracy) are scored on the test half; the
    set-level choice takes the unit with the best choosing-half balanced accuracy (the first of
    equal ones). The test half is never read before the choice. ``splits`` (choose, test) index
    pairs replace the :func:`stratified_halves` of ``(labels, n_splits, seed, groups)``; with
    one split and ``groups``, the set-level std is the chosen unit's spread over resamples of
    the test half's groups (:func:`group_bootstrap_std`), which one split cannot show.
    """
    x = _as_float(values)
    y = _as_labels(labels, x.shape[0])
    if splits is None:
        splits = stratified_halves(y, n_splits, seed, groups)
    stack = _all_split_scores(x.T.contiguous(), y, splits, n_thresholds)  # (S, U) each
    idx = stack["choose_balanced_accuracy"].argmax(1)  # (S,) the set-level choice
    at = {k: v.gather(1, idx[:, None])[:, 0] for k, v in stack.items()}  # (S,)
    best_std = float(at["balanced_accuracy"].std(correction=0))
    if len(splits) == 1 and groups is not None:
        test = splits[0][1]
        best_std = group_bootstrap_std(x[test, idx[0]], y[test],
                                       torch.as_tensor(groups).reshape(-1)[test],
                                       int(at["polarity"][0]), float(at["threshold"][0]),
                                       seed=seed)
    return HeldOut(
        unit_accuracy=stack["accuracy"].mean(0),
        unit_balanced_accuracy=stack["balanced_accuracy"].mean(0),
        unit_balanced_accuracy_std=stack["balanced_accuracy"].std(0, correction=0),
        unit_auc=stack["auc"].mean(0),
        chosen=idx,
        best_accuracy=float(at["accuracy"].mean()),
        best_balanced_accuracy=float(at["balanced_accuracy"].mean()),
        best_balanced_accuracy_std=best_std,
        best_auc=float(at["auc"].mean()),
        best_polarity=at["polarity"].long(),
        best_threshold=at["threshold"].double(),
        best_split_balanced_accuracy=at["balanced_accuracy"],
    )


def best_unit_score(values, labels, n_splits: int = 20, n_thresholds: int = 20,
                    seed: int = 0, groups=None, splits=None) -> dict:
    """The contract's SCORE of a set of units plus ``index`` (the unit chosen most often on the
    choosing halves) and its per-unit tables (for rankings).

    ``heldout_*`` come from the set-level protocol (unit chosen per split on the choosing half);
    ``accuracy``, ``balanced_accuracy``, ``auc`` and ``polarity`` are Le et al.'s protocol (with
    quantile thresholds and polarity by AUC) for ``index`` on the whole probe. ``splits``
    replaces the :func:`stratified_halves` of ``(labels, n_splits, seed, groups)``.
    """
    whole = threshold_scores(values, labels, n_thresholds)
    held = heldout_scores(values, labels, n_splits, n_thresholds, seed, splits, groups)
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
