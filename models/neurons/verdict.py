"""Is there a face unit? The rule every reader of ``evaluation.json`` shows as is.

A face unit is the top stage's best unit (chosen held out) when it

- fires more for the class (polarity +1; a unit with polarity -1 is "anti-face"), and
- leads every baseline's held-out balanced accuracy by more than its own spread (std over the
  splits).

Otherwise the verdict names the baseline that wins (the strongest one) and by how much. Either
way it quotes the probe's confound figure (image statistics alone, cross-validated), with a
warning when it is above :data:`models.neurons.image_stats.CONFOUND_LIMIT`.
"""

from __future__ import annotations

from models.neurons.image_stats import CONFOUND_LIMIT


def _unit_name(best: dict) -> str:
    return f"stage {best['stage']} {best['layer']} #{best['index']}"


def verdict(best: dict, baselines: dict[str, dict], confound: float | None,
            positive: str = "faces") -> dict:
    """The contract's ``verdict`` object from ``best_neuron`` and ``baselines`` (SCORE dicts)."""
    ba, std = best["heldout_balanced_accuracy"], best["heldout_balanced_accuracy_std"]
    name, strongest = max(baselines.items(), key=lambda kv: kv[1]["heldout_balanced_accuracy"])
    lead = ba - strongest["heldout_balanced_accuracy"]
    face_unit = best["polarity"] == 1 and lead > std
    unit = f"{_unit_name(best)} ({ba:.3f} ± {std:.3f} held out, AUC {best['heldout_auc']:.3f})"
    plural = positive.endswith("s") and not positive.endswith("ss")
    cls = positive[:-1] if plural else positive  # faces: a face unit; class: a class unit
    if face_unit:
        text = (f"{cls} unit: {unit} leads every baseline, the strongest {name} by "
                f"{lead:.3f}, more than its spread")
    elif best["polarity"] != 1:
        text = (f"no {cls} unit: the best unit, {unit}, is anti-{cls} (fires less for "
                f"{positive}); the strongest baseline, {name}, scores "
                f"{strongest['heldout_balanced_accuracy']:.3f}")
    elif lead > 0:
        text = (f"no {cls} unit: {unit} leads the strongest baseline, {name}, by only "
                f"{lead:.3f}, within its spread")
    else:
        text = (f"no {cls} unit: {name} scores {strongest['heldout_balanced_accuracy']:.3f}, "
                f"{-lead:.3f} above the best unit, {unit}")
    if confound is not None:
        text += f"; probe confound {confound:.2f}"
        if confound > CONFOUND_LIMIT:
            text += f" (above {CONFOUND_LIMIT:.2f}: image statistics alone separate the probe)"
    return {
        "face_unit": bool(face_unit),
        "text": text + ".",
        "best": {"stage": best["stage"], "layer": best["layer"], "index": best["index"],
                 "polarity": best["polarity"], "balanced_accuracy": ba, "std": std,
                 "auc": best["heldout_auc"]},
        "winner": None if face_unit else {
            "name": name, "balanced_accuracy": strongest["heldout_balanced_accuracy"],
            "margin": round(-lead, 4)},
        "probe_confound": confound,
    }
