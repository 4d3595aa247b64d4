"""A baseline drawn several times: its figure is the mean over the draws, its spread theirs.

The exemplar networks (the stack with training windows as its units, and with spread-out ones)
are one random draw of 256 windows each. Whether a draw holds a window that happens to be a good
face template moves their best unit by many points, far more than a learned unit moves between
the evaluation's splits: one draw cannot say whether learning beat what the architecture gives
untrained. Scored over ``n`` draws, each with as many units as the learned stage (a matched
search), the baseline is the mean of the draws' SCOREs, and a unit must lead that mean by
more than the draws' standard deviation as well as by more than its own spread
(:func:`needed_lead`, used by :mod:`models.neurons.verdict`).

The maximum over draws is not the figure: it grows with ``n`` (a search over ``n`` times the
learned stage's units), so no fixed number of draws would make it a fair comparison.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np

#: The SCORE figures averaged over draws (``heldout_balanced_accuracy_std``: the mean of the
#: draws' spreads over the splits, the same meaning as in a single SCORE).
FIGURES = ("accuracy", "balanced_accuracy", "auc", "heldout_accuracy",
           "heldout_balanced_accuracy", "heldout_balanced_accuracy_std", "heldout_auc")


def drawn_score(scores: list[dict]) -> dict:
    """One SCORE for ``scores`` (a SCORE per draw, in draw order): each figure of
    :data:`FIGURES` the mean over the draws, ``polarity`` the draws' most common one, and
    ``draws``: ``n``, each draw's held-out balanced accuracy, AUC, unit and polarity, and
    ``std``, the standard deviation (ddof 1) of their held-out balanced accuracy. A single
    draw is returned as it is."""
    if len(scores) == 1:
        return scores[0]
    ba = [s["heldout_balanced_accuracy"] for s in scores]
    out = {k: round(float(np.mean([s[k] for s in scores])), 4) for k in FIGURES}
    out["polarity"] = Counter(s["polarity"] for s in scores).most_common(1)[0][0]
    out["draws"] = {"n": len(scores), "heldout_balanced_accuracy": ba,
                    "heldout_auc": [s["heldout_auc"] for s in scores],
                    "index": [s["index"] for s in scores],
                    "polarity": [s["polarity"] for s in scores],
                    "std": round(float(np.std(ba, ddof=1)), 4)}
    return out


def draws_std(score: Mapping) -> float | None:
    """The spread of a drawn baseline's draws (None for a baseline drawn once)."""
    d = score.get("draws")
    if isinstance(d, Mapping) and isinstance(d.get("std"), (int, float)):
        return float(d["std"])
    return None


def needed_lead(spread: float, score: Mapping) -> float:
    """How far a unit with held-out spread ``spread`` must lead baseline ``score``: more than
    its own spread, and for a drawn baseline more than the spread of the draws too."""
    return max(spread, draws_std(score) or 0.0)
