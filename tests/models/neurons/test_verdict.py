"""The verdict's rules: a face unit only with polarity +1 and a lead larger than its spread."""

from __future__ import annotations

import pytest

from models.neurons.verdict import verdict


def _s(ba: float, std: float = 0.0, auc: float = 0.7, polarity: int = 1) -> dict:
    return {"heldout_balanced_accuracy": ba, "heldout_balanced_accuracy_std": std,
            "heldout_auc": auc, "polarity": polarity}


BEST = {"stage": 1, "layer": "hidden", "index": 12}
BASE = {"always_negative": _s(0.5), "image_statistics": _s(0.66), "best_pixel": _s(0.6)}


def test_face_unit_needs_a_lead_larger_than_its_spread():
    v = verdict(_s(0.72, 0.04) | BEST, BASE, 0.55)
    assert v["face_unit"] and v["winner"] is None and v["text"].startswith("face unit:")
    assert v["best"] == {"stage": 1, "layer": "hidden", "index": 12, "polarity": 1,
                         "balanced_accuracy": 0.72, "std": 0.04, "auc": 0.7}
    assert v["probe_confound"] == 0.55 and "probe confound 0.55" in v["text"]
    near = verdict(_s(0.69, 0.04) | BEST, BASE, 0.55)  # leads by 0.03 < 0.04
    assert not near["face_unit"] and "within its spread" in near["text"]
    assert near["winner"]["name"] == "image_statistics" and near["winner"]["margin"] == -0.03


def test_anti_face_unit_is_never_the_face_unit():
    v = verdict(_s(0.9, 0.01, polarity=-1) | BEST, BASE, 0.5)
    assert not v["face_unit"] and "anti-face" in v["text"]
    assert v["best"]["polarity"] == -1 and v["winner"]["name"] == "image_statistics"


def test_a_baseline_that_wins_is_named_with_its_margin_and_confound_warned():
    v = verdict(_s(0.61, 0.02) | BEST, BASE, 0.7)
    assert not v["face_unit"] and v["winner"] == {"name": "image_statistics",
                                                 "balanced_accuracy": 0.66, "margin": 0.05}
    assert v["text"].startswith("no face unit: image_statistics scores 0.660, 0.050 above")
    assert "above 0.60" in v["text"]


def test_a_lead_equal_to_the_spread_and_a_confound_at_the_limit_are_both_on_the_safe_side():
    """The boundaries, with values exact in binary: a lead of exactly its spread is not "more
    than its spread" (no face unit), and a probe confound of exactly the limit is within it
    (DESIGN: image statistics must stay <= 0.60), so no warning. Guards ``lead > std`` and
    ``confound > CONFOUND_LIMIT`` against ``>=``, which the cases above never reach."""
    from models.neurons.image_stats import CONFOUND_LIMIT

    base = {"always_negative": _s(0.5)}
    tie = verdict(_s(0.75, 0.25) | BEST, base, CONFOUND_LIMIT)
    assert not tie["face_unit"] and "within its spread" in tie["text"]
    assert tie["winner"] == {"name": "always_negative", "balanced_accuracy": 0.5,
                             "margin": -0.25}
    assert "probe confound 0.60." in tie["text"] and "above" not in tie["text"]
    assert verdict(_s(0.75, 0.24) | BEST, base, None)["face_unit"]  # just more than it


def _drawn(bas: list[float]) -> dict:
    from models.neurons.draws import drawn_score

    return drawn_score([_s(ba, 0.02) | {"index": i, "accuracy": ba, "balanced_accuracy": ba,
                                        "auc": 0.8, "heldout_accuracy": ba}
                        for i, ba in enumerate(bas)])


def test_a_drawn_baseline_must_be_led_by_more_than_the_spread_of_its_draws():
    """Exemplar draws 0.70-0.88 (mean 0.754, spread 0.072 over draws): a unit at 0.80 leads
    their mean by 0.046, more than its own spread (0.03) but within the draws'; at 0.85 it
    leads by more than both. The baseline it fails is named even when a single-draw baseline
    scores higher."""
    ex = _drawn([0.70, 0.72, 0.73, 0.74, 0.88])
    base = {**BASE, "exemplar_filters": ex, "template": _s(0.77)}
    v = verdict(_s(0.80, 0.03) | BEST, base, 0.5)
    assert not v["face_unit"] and v["winner"]["name"] == "exemplar_filters"
    assert v["winner"]["margin"] == pytest.approx(-0.046, abs=1e-4)
    assert ("leads the baseline, exemplar_filters (mean of 5 draws), by only 0.046, within the "
            f"spread of its draws ({ex['draws']['std']:.3f})") in v["text"]
    found = verdict(_s(0.85, 0.03) | BEST, base, 0.5)
    assert found["face_unit"] and "the strongest template by 0.080" in found["text"]
    alone = verdict(_s(0.85, 0.03) | BEST, {**BASE, "exemplar_filters": ex}, 0.5)
    assert alone["face_unit"] and ("the strongest exemplar_filters (mean of 5 draws) by 0.096, "
                                   "more than its spread and the draws' (0.072)") in alone["text"]
    under = verdict(_s(0.74, 0.03) | BEST, base, 0.5)  # below the template and the draws' mean
    assert under["winner"]["name"] == "exemplar_filters"
    assert under["text"].startswith("no face unit: exemplar_filters (mean of 5 draws) scores")


def test_a_tie_with_a_baseline_is_said_as_a_tie():
    v = verdict(_s(0.66, 0.02) | BEST, BASE, None)
    assert not v["face_unit"] and v["winner"]["margin"] == 0.0
    assert str(v["winner"]["margin"]) == "0.0"  # not -0.0
    assert v["text"].startswith("no face unit: image_statistics scores 0.660, as much as the "
                                "best unit, stage 1 hidden #12")
