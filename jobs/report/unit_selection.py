"""Which units ``catneuron visualize`` shows in detail: per stage the most selective pooled units
and a random sample of the rest (stage 0 lists all its pooled units, the others only by position
and selectivity), the most selective units of every other layer ``catneuron evaluate`` ranked
(``hidden``), and always the headline unit and each (stage, layer)'s best, whatever their layer.

Selectivity comes from ``RUN/evaluation.json`` (the held-out balanced accuracy ranking of
``catneuron evaluate``) when it exists, else from the activation variance over a sample of the
dataset's frames (a unit that never changes says nothing, whatever its weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.neurons.units import LAYERS, stage_outputs
from models.stack import RBMStack

Key = tuple[int, str]  # (stage, layer)


@dataclass
class EvaluatedUnits:
    """What ``evaluation.json`` says about units: per ``(stage, layer)`` its ranking (best
    first) and its best unit's index, and the headline unit ``(stage, layer, index)``: the
    verdict's ``best``, else ``best_neuron`` (an evaluation from an older version)."""

    rankings: dict[Key, list[dict]] = field(default_factory=dict)
    bests: dict[Key, int] = field(default_factory=dict)
    headline: tuple[int, str, int] | None = None

    def must_show(self, stage: int, layer: str, n_units: int) -> list[int]:
        """Units of ``(stage, layer)`` (``n_units`` of them) shown in detail whatever their
        rank: its best and the headline unit. An index outside ``0..n_units - 1`` (an
        evaluation of another model, or a damaged file) is left out, as a damaged entry is."""
        out = [self.bests[(stage, layer)]] if (stage, layer) in self.bests else []
        if self.headline is not None and self.headline[:2] == (stage, layer):
            out.append(self.headline[2])
        return [i for i in dict.fromkeys(out) if 0 <= i < n_units]


def _index(value) -> bool:
    """``value`` can name a stage or a unit: an int (not a bool) >= 0."""
    return type(value) is int and value >= 0


def _unit_key(d) -> tuple[int, str, int] | None:
    """``(stage, layer, index)`` of a unit entry ``{"stage", "layer", "index"}``; None when it
    is damaged (a key missing, a negative or non-integer number, a layer visualize skips)."""
    ok = (isinstance(d, dict) and _index(d.get("stage")) and _index(d.get("index"))
          and d.get("layer") in LAYERS)
    return (d["stage"], d["layer"], d["index"]) if ok else None


def evaluated_units(run: Path) -> EvaluatedUnits:
    """The rankings, bests and headline unit of ``run/evaluation.json`` for the layers
    visualize draws (:data:`models.neurons.units.LAYERS`); empty when it is missing or
    unreadable."""
    try:
        doc = json.loads((run / "evaluation.json").read_text())
        stages = doc["stages"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # Recursion: too deep
        return EvaluatedUnits()
    out = EvaluatedUnits()
    for entry in stages if isinstance(stages, list) else []:
        if not isinstance(entry, dict) or entry.get("layer") not in LAYERS:
            continue
        stage, ranking = entry.get("stage"), entry.get("ranking", [])
        if not (type(stage) is int and stage >= 0 and isinstance(ranking, list)):
            continue  # a damaged entry: skipped, as an unreadable file is
        key = (stage, str(entry["layer"]))
        out.rankings[key] = [r for r in ranking if isinstance(r, dict)
                             and type(r.get("index")) is int]
        best = entry.get("best")
        if isinstance(best, dict) and _index(best.get("index")):
            out.bests[key] = best["index"]
    verdict = doc.get("verdict") if isinstance(doc, dict) else None
    out.headline = _unit_key((verdict or {}).get("best") if isinstance(verdict, dict) else None)
    if out.headline is None:
        out.headline = _unit_key(doc.get("best_neuron"))
    return out


def evaluation_rankings(run: Path) -> dict[int, list[dict]]:
    """stage -> ranking entries ``{"index", "heldout_balanced_accuracy", "auc", ...}`` of the
    pooled layer, best first; empty when there is no readable ``evaluation.json``."""
    return {s: r for (s, layer), r in evaluated_units(run).rankings.items() if layer == "pooled"}


@torch.no_grad()
def activation_variance(stack: RBMStack, frames: np.ndarray, top: int,
                        batch_size: int = 256) -> list[torch.Tensor]:
    """Per stage ``0..top``: each pooled unit's variance (n_units,) over ``frames`` (the sample
    variance; 0 over a single frame, where it would be NaN: nothing varies in one frame)."""
    outs: list[list[torch.Tensor]] = [[] for _ in range(top + 1)]
    for lo in range(0, len(frames), batch_size):
        batch = torch.from_numpy(frames[lo : lo + batch_size])
        for k, o in enumerate(stage_outputs(stack, batch, top)):
            outs[k].append(o.flatten(1).cpu())
    return [torch.cat(o).var(0, correction=min(1, len(frames) - 1)) for o in outs]


def rank_units(ranking: list[dict], variance: torch.Tensor, n_units: int) -> list[int]:
    """All ``n_units`` units best first: the evaluation's ranking, then the rest by decreasing
    ``variance`` (n_units,), or in index order when it is empty (not computed)."""
    ranked = [int(r["index"]) for r in ranking if 0 <= int(r["index"]) < n_units]
    seen = set(ranked)
    order = torch.argsort(variance, descending=True) if len(variance) else range(n_units)
    rest = [int(i) for i in order if int(i) not in seen]
    return list(dict.fromkeys(ranked)) + rest


def choose_units(ranked: list[int], n_selective: int, n_sample: int,
                 rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(the ``n_selective`` best units, the units shown in detail): the best plus ``n_sample``
    drawn at random from the rest, in index order."""
    selective = ranked[:n_selective]
    rest = ranked[n_selective:]
    drawn = rng.choice(len(rest), size=min(n_sample, len(rest)), replace=False) if rest else []
    return selective, sorted(selective + [rest[int(i)] for i in drawn])
