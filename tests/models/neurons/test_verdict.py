"""The verdict's rules: a face unit only with polarity +1 and a lead larger than its spread."""

from __future__ import annotations

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
