"""The held-out protocol's per-split scores of every unit, from one sort of each unit (numba).

:func:`models.neurons.selectivity.heldout_scores` scores ``U`` units on ``S`` random halves of
``N`` images. In torch, each split gathers each half's responses (``(U, N/2)`` copies), sorts
them and counts by binary search: ``5 S`` gathers and sorts of the whole table. Here each unit's
responses are sorted once; a split then only labels the images (choosing or test half, positive
or negative), and a walk along the sorted responses yields each half's sorted values, whose
counts below and at a threshold and Mann-Whitney AUC come from two-pointer merges:
``O(U (N log N + S N))``, one task per unit, no table-sized copies.

For each split and unit it returns what :func:`~models.neurons.selectivity._split_scores`
computes, with the same float64 operations in the same order (so the same bits):

- on the choosing half: the polarity (+1 when ``AUC >= 0.5``), the rank cut points
  ``t_j`` (``j = 0``: the minimum; else the midpoint of the sorted values at ranks ``r_j - 1``
  and ``r_j``), and the best balanced accuracy over them (the first ``j`` of equal ones) and its
  threshold;
- on the test half, at that polarity and threshold: accuracy, balanced accuracy and the AUC
  under the polarity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.kernels.counter_rng import HAVE_NUMBA, matched_threads

CHOOSE_NEG, CHOOSE_POS, TEST_NEG, TEST_POS, NEITHER = 0, 1, 2, 3, 4
FIELDS = ("accuracy", "balanced_accuracy", "auc", "choose_balanced_accuracy", "polarity",
          "threshold")

if HAVE_NUMBA:
    from numba import njit, prange

    @njit(inline="always")
    def _count_below(a, n, t, lt, le):  # pragma: no cover - compiled
        """(#a[:n] < t, #a[:n] <= t) of sorted ``a``, moving on from the counts ``lt``,
        ``le`` of a threshold ``<= t`` (0, 0: any)."""
        while lt < n and a[lt] < t:
            lt += 1
        le = max(le, lt)
        while le < n and a[le] <= t:
            le += 1
        return lt, le

    @njit(inline="always")
    def _auc(pos, n_pos, neg, n_neg):  # pragma: no cover - compiled
        """Mann-Whitney AUC of polarity +1 from sorted ``pos[:n_pos]``, ``neg[:n_neg]``:
        ``0.5 * sum_p (#neg < p + #neg <= p) / (P Nn)`` (pointers only move forward)."""
        lt = le = 0
        total = 0.0
        for i in range(n_pos):
            lt, le = _count_below(neg, n_neg, pos[i], lt, le)
            total += float(lt + le)
        return 0.5 * total / (n_pos * n_neg)

    @njit(inline="always")
    def _true_rates(lt_pos, le_pos, n_pos, lt_neg, le_neg, n_neg, polarity):  # pragma: no cover
        """(true-positive rate, true-negative rate) of ``x >= t`` (+1) or ``x <= t`` (-1)."""
        if polarity > 0:
            return (n_pos - lt_pos) / n_pos, lt_neg / n_neg
        return le_pos / n_pos, (n_neg - le_neg) / n_neg

    @njit(parallel=True, cache=True)
    def _scores(rows, cats, ranks, out):  # pragma: no cover - compiled
        """``out (6, S, U)`` (:data:`FIELDS`) from ``rows (U, N)``, ``cats (S, N)`` int8 (the
        image's half and class, :data:`NEITHER`: not read) and ``ranks (S, T)`` cut ranks."""
        U, N = rows.shape
        S, T = ranks.shape
        for u in prange(U):
            order = np.argsort(rows[u], kind="mergesort")
            v = rows[u][order]
            half = np.empty((6, N), dtype=rows.dtype)  # choose, then by category, then none
            count = np.empty(5, dtype=np.int64)
            thr = np.empty(T, dtype=rows.dtype)
            for s in range(S):
                count[:] = 0
                nc = 0
                for i in range(N):  # branch-free: every value is written, the counts say where
                    c = cats[s, order[i]]
                    half[1 + c, count[c]] = v[i]
                    count[c] += 1
                    half[0, nc] = v[i]
                    nc += c <= CHOOSE_POS
                n_cn, n_cp, n_tn, n_tp = count[0], count[1], count[2], count[3]
                for j in range(T):
                    r = ranks[s, j]
                    thr[j] = half[0, 0] if r == 0 else 0.5 * (half[0, r - 1] + half[0, r])
                pol = 1 if _auc(half[2], n_cp, half[1], n_cn) >= 0.5 else -1
                best, best_j = -1.0, 0
                lp = ep = ln = en = 0
                for j in range(T):  # the cut points do not decrease: the counts only grow
                    lp, ep = _count_below(half[2], n_cp, thr[j], lp, ep)
                    ln, en = _count_below(half[1], n_cn, thr[j], ln, en)
                    tpr, tnr = _true_rates(lp, ep, n_cp, ln, en, n_cn, pol)
                    ba = 0.5 * (tpr + tnr)
                    if ba > best:
                        best, best_j = ba, j
                t = thr[best_j]
                lp, ep = _count_below(half[4], n_tp, t, 0, 0)
                ln, en = _count_below(half[3], n_tn, t, 0, 0)
                tpr, tnr = _true_rates(lp, ep, n_tp, ln, en, n_tn, pol)
                auc = _auc(half[4], n_tp, half[3], n_tn)
                out[0, s, u] = (tpr * n_tp + tnr * n_tn) / (n_tp + n_tn)
                out[1, s, u] = 0.5 * (tpr + tnr)
                out[2, s, u] = auc if pol > 0 else 1.0 - auc
                out[3, s, u] = best
                out[4, s, u] = pol
                out[5, s, u] = t


def available(rows: Tensor) -> bool:
    """Whether :func:`split_scores` runs here: numba installed and a CPU float64 table."""
    return HAVE_NUMBA and rows.device.type == "cpu" and rows.dtype == torch.float64


def split_scores(rows: Tensor, y: Tensor, splits: list[tuple[Tensor, Tensor]],
                 ranks: Tensor) -> dict[str, Tensor]:
    """Per split and unit, ``(S, U)`` tensors named by :data:`FIELDS`.

    Parameters
    ----------
    rows : (U, N) float64, a unit's responses a row.
    y : (N,) bool labels.
    splits : S (choose, test) index pairs (both classes on each side; an image in neither
        half is not read).
    ranks : (S, T) the choosing half's cut ranks ``r_j`` (each ``< len(choose)``).
    """
    n = rows.shape[1]
    cats = np.full((len(splits), n), NEITHER, dtype=np.int8)
    for s, (choose, test) in enumerate(splits):
        cats[s, choose.numpy()] = np.where(y[choose].numpy(), CHOOSE_POS, CHOOSE_NEG)
        cats[s, test.numpy()] = np.where(y[test].numpy(), TEST_POS, TEST_NEG)
    out = np.empty((len(FIELDS), len(splits), rows.shape[0]), dtype=np.float64)
    with matched_threads():
        _scores(np.ascontiguousarray(rows.numpy()), cats,
                np.ascontiguousarray(ranks.numpy().astype(np.int64)), out)
    return {k: torch.from_numpy(out[i]) for i, k in enumerate(FIELDS)}
