"""Where a held-out winner wins: which unit each split chose, and its score per image bin.

Both read the set-level choices of :func:`models.neurons.selectivity.heldout_scores` (per split:
the unit, its polarity ``s`` and threshold ``t``, chosen on the choosing half) and re-score them
on parts of each split's test half: the prediction is ``s * (x - t) >= 0`` as in the protocol.
"""

from __future__ import annotations

import numpy as np

from models.neurons.selectivity import HeldOut

SIZE_BINS = ("small", "medium", "large")
QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


def stability(held: HeldOut, names: list[str]) -> dict:
    """``per_split`` (the unit name each split chose), ``share`` (name -> share of splits,
    most chosen first) and ``top_share`` (the most chosen unit's share)."""
    per_split = [names[int(i)] for i in held.chosen]
    uniq, counts = np.unique(per_split, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    share = {str(uniq[i]): round(float(counts[i]) / len(per_split), 4) for i in order}
    return {"per_split": per_split, "share": share,
            "top_share": round(float(counts.max()) / len(per_split), 4)}


def _ba(pred: np.ndarray, y: np.ndarray) -> float | None:
    """Balanced accuracy of bool ``pred`` for 0/1 ``y``; None unless both classes occur."""
    if y.all() or not y.any():
        return None
    return 0.5 * (float(pred[y == 1].mean()) + float((~pred[y == 0]).mean()))


def by_bin(values: np.ndarray, y: np.ndarray, held: HeldOut, splits: list,
           bins: np.ndarray, names: tuple[str, ...]) -> dict:
    """Held-out balanced accuracy of each split's chosen unit on the test images of each bin.

    ``values`` (N, U), ``y`` (N,) 0/1, ``bins`` (N,) int index into ``names``. Returns
    ``{name: {"heldout_balanced_accuracy", "std", "n_images"}}`` (mean and std over the splits
    where the bin's test part holds both classes; None when none does).
    """
    out = {}
    for b, name in enumerate(names):
        scores, n = [], int((bins == b).sum())
        for s, (_, test) in enumerate(splits):
            t = np.asarray(test)[bins[np.asarray(test)] == b]
            unit = int(held.chosen[s])
            pred = int(held.best_polarity[s]) * (values[t, unit] - float(held.best_threshold[s]))
            ba = _ba(pred >= 0, y[t])
            if ba is not None:
                scores.append(ba)
        out[name] = {"heldout_balanced_accuracy": round(float(np.mean(scores)), 4) if scores
                     else None, "std": round(float(np.std(scores)), 4) if scores else None,
                     "n_images": n}
    return out


def size_bins(boxes: np.ndarray, side: int, scale: tuple[float, float]) -> np.ndarray:
    """(N,) index into :data:`SIZE_BINS`: the box side's third of the ``scale`` range
    (fractions of the image ``side``)."""
    frac = (boxes[:, 2] - boxes[:, 0]) / side
    edges = np.linspace(scale[0], scale[1], len(SIZE_BINS) + 1)[1:-1]
    return np.searchsorted(edges, frac, side="right")


def quadrants(boxes: np.ndarray, side: int) -> np.ndarray:
    """(N,) index into :data:`QUADRANTS` of the box centre."""
    cy = (boxes[:, 0] + boxes[:, 2]) / 2
    cx = (boxes[:, 1] + boxes[:, 3]) / 2
    return 2 * (cy >= side / 2).astype(int) + (cx >= side / 2).astype(int)
