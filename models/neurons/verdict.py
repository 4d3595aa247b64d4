"""Is there a face unit? The rule every reader of ``evaluation.json`` shows as is.

A face unit is the top stage's best unit (chosen held out) when it

- fires more for the class (polarity +1; a unit with polarity -1 is "anti-face"), and
- leads every baseline's held-out balanced accuracy by more than its own spread (std over the
  splits) and, for a baseline drawn several times (:mod:`models.neurons.draws`: its figure the
  mean of the draws), by more than the draws' spread as well.

Otherwise the verdict names the baseline the unit misses by most (the strongest one, unless
a drawn baseline's spread decides) and by how much. Either
way it quotes the probe's confound figure (image statistics alone, cross-validated), with a
warning when it is above :data:`models.neurons.image_stats.CONFOUND_LIMIT`.
"""

from __future__ import annotations

from models.neurons.draws import draws_std, needed_lead
from models.neurons.image_stats import CONFOUND_LIMIT


def _unit_name(best: dict) -> str:
    return f"stage {best['stage']} {best['layer']} #{best['index']}"


def verdict(best: dict, baselines: dict[str, dict], confound: float | None,
            positive: str = "faces") -> dict:
    """The contract's ``verdict`` object from ``best_neuron`` and ``baselines`` (SCORE dicts)."""
    ba, std = best["heldout_balanced_accuracy"], best["heldout_balanced_accuracy_std"]
    lead = {n: ba - b["heldout_balanced_accuracy"] for n, b in baselines.items()}
    slack = {n: lead[n] - needed_lead(std, b) for n, b in baselines.items()}
    strongest = max(baselines, key=lambda n: baselines[n]["heldout_balanced_accuracy"])
    face_unit = best["polarity"] == 1 and all(v > 0 for v in slack.values())
    # the baseline the verdict turns on: the strongest for a face unit, else the one it fails
    name = strongest if face_unit else min(slack, key=lambda n: (slack[n], -lead[n]))
    score, spread = baselines[name], draws_std(baselines[name])
    unit = f"{_unit_name(best)} ({ba:.3f} ± {std:.3f} held out, AUC {best['heldout_auc']:.3f})"
    drawn = "" if spread is None else f" (mean of {score['draws']['n']} draws)"
    plural = positive.endswith("s") and not positive.endswith("ss")
    cls = positive[:-1] if plural else positive  # faces: a face unit; class: a class unit
    if face_unit:
        text = (f"{cls} unit: {unit} leads every baseline, the strongest {name}{drawn} by "
                f"{lead[name]:.3f}, more than its spread")
        if spread is not None:
            text += f" and the draws' ({spread:.3f})"
    elif best["polarity"] != 1:
        name, score = strongest, baselines[strongest]
        text = (f"no {cls} unit: the best unit, {unit}, is anti-{cls} (fires less for "
                f"{positive}); the strongest baseline, {name}, scores "
                f"{score['heldout_balanced_accuracy']:.3f}")
    elif lead[name] > 0:
        within = ("its spread" if lead[name] <= std else
                  f"the spread of its draws ({spread:.3f})")
        which = "the strongest baseline" if name == strongest else "the baseline"
        text = (f"no {cls} unit: {unit} leads {which}, {name}{drawn}, by only "
                f"{lead[name]:.3f}, within {within}")
    elif lead[name] == 0:
        text = (f"no {cls} unit: {name}{drawn} scores {score['heldout_balanced_accuracy']:.3f}, "
                f"as much as the best unit, {unit}")
    else:
        text = (f"no {cls} unit: {name}{drawn} scores {score['heldout_balanced_accuracy']:.3f}, "
                f"{-lead[name]:.3f} above the best unit, {unit}")
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
            "name": name, "balanced_accuracy": score["heldout_balanced_accuracy"],
            "margin": round(-lead[name], 4) + 0.0},  # + 0.0: a tie is 0.0, not -0.0
        "probe_confound": confound,
    }
