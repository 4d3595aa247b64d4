"""A baseline drawn several times: the mean of its draws' SCOREs, and their spread."""

from __future__ import annotations

import numpy as np
import pytest

from models.neurons.draws import FIGURES, drawn_score, draws_std, needed_lead


def _s(ba: float, index: int, polarity: int = 1) -> dict:
    return {"index": index, "polarity": polarity, "heldout_chosen_fraction": 0.5,
            **{k: ba + 0.01 * i for i, k in enumerate(FIGURES)}}


def test_a_drawn_baseline_is_the_mean_of_its_draws_with_their_spread():
    draws = [_s(0.7, 3), _s(0.9, 8, polarity=-1), _s(0.74, 1)]
    got = drawn_score(draws)
    for k in FIGURES:
        assert got[k] == pytest.approx(np.mean([d[k] for d in draws]), abs=1e-4)
    assert got["polarity"] == 1 and "index" not in got  # no one unit stands for the draws
    assert got["draws"] == {"n": 3, "heldout_balanced_accuracy": [d[
        "heldout_balanced_accuracy"] for d in draws], "heldout_auc": [d["heldout_auc"]
        for d in draws], "index": [3, 8, 1], "polarity": [1, -1, 1],
        "std": round(float(np.std([d["heldout_balanced_accuracy"] for d in draws], ddof=1)), 4)}
    assert draws_std(got) == got["draws"]["std"] == pytest.approx(0.1058, abs=1e-4)


def test_one_draw_is_the_score_itself_and_needs_only_the_units_own_spread():
    one = _s(0.7, 3)
    assert drawn_score([one]) is one and draws_std(one) is None
    assert needed_lead(0.03, one) == 0.03
    drawn = drawn_score([_s(0.7, 3), _s(0.9, 8)])
    assert needed_lead(0.03, drawn) == drawn["draws"]["std"] > 0.1
    assert needed_lead(0.5, drawn) == 0.5
