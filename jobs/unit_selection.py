"""Which units ``catneuron visualize`` shows in detail: per stage the most selective and a random
sample of the rest (stage 0 lists all its units, the others only by position and selectivity).

Selectivity comes from ``RUN/evaluation.json`` (the held-out balanced accuracy ranking of
``catneuron evaluate``) when it exists, else from the activation variance over a sample of the
dataset's frames (a unit that never changes says nothing, whatever its weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.neurons.units import stage_outputs
from models.stack import RBMStack


def evaluation_rankings(run: Path) -> dict[int, list[dict]]:
    """stage -> ranking entries ``{"index", "heldout_balanced_accuracy", "auc", ...}`` of the
    pooled layer, best first; empty when there is no readable ``evaluation.json``."""
    try:
        doc = json.loads((run / "evaluation.json").read_text())
        stages = doc["stages"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out: dict[int, list[dict]] = {}
    for entry in stages if isinstance(stages, list) else []:
        if isinstance(entry, dict) and entry.get("layer") == "pooled":
            ranking = [r for r in entry.get("ranking", []) if isinstance(r, dict)
                       and isinstance(r.get("index"), int)]
            out[int(entry["stage"])] = ranking
    return out


@torch.no_grad()
def activation_variance(stack: RBMStack, frames: np.ndarray, top: int,
                        batch_size: int = 256) -> list[torch.Tensor]:
    """Per stage ``0..top``: each pooled unit's variance (n_units,) over ``frames``."""
    outs: list[list[torch.Tensor]] = [[] for _ in range(top + 1)]
    for lo in range(0, len(frames), batch_size):
        batch = torch.from_numpy(frames[lo : lo + batch_size])
        for k, o in enumerate(stage_outputs(stack, batch, top)):
            outs[k].append(o.flatten(1).cpu())
    return [torch.cat(o).var(0) for o in outs]


def rank_units(ranking: list[dict], variance: torch.Tensor) -> list[int]:
    """Units best first: the evaluation's ranking, then the rest by decreasing variance."""
    ranked = [int(r["index"]) for r in ranking if 0 <= int(r["index"]) < len(variance)]
    seen = set(ranked)
    rest = [int(i) for i in torch.argsort(variance, descending=True) if int(i) not in seen]
    return list(dict.fromkeys(ranked)) + rest


def choose_units(ranked: list[int], n_selective: int, n_sample: int,
                 rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(the ``n_selective`` best units, the units shown in detail): the best plus ``n_sample``
    drawn at random from the rest, in index order."""
    selective = ranked[:n_selective]
    rest = ranked[n_selective:]
    drawn = rng.choice(len(rest), size=min(n_sample, len(rest)), replace=False) if rest else []
    return selective, sorted(selective + [rest[int(i)] for i in drawn])
