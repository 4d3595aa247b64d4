"""Top-k frames of a whole dataset for units of any layer, scanned by Ray actors.

:class:`cluster.topk.TopKScanner` tracks pooled units (keyed by stage); :class:`LayerScanner`
keys them by ``(stage, layer)`` so the hidden units ``catneuron evaluate`` may name as the best
(the stage's hidden layer, e.g. the RBM's ``P(h = 1 | v)`` before pooling) get their top frames
too. Sharding, chunking, merging, the driver's help while actors start and frame ids are
:mod:`cluster.topk`'s (``shard_index << 32 | row``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cluster.topk import BATCH_SIZE, TopKScanner, scan
from models.neurons.topk import RunningTopK
from models.neurons.units import stage_maps

Key = tuple[int, str]  # (stage, layer)
LayerUnits = dict[Key, list[int]]


@torch.no_grad()
def layer_outputs(stack, frames: torch.Tensor, keys: list[Key]) -> dict[Key, torch.Tensor]:
    """(N, units) responses of every ``(stage, layer)`` in ``keys`` to one batch of frames,
    flattened C-major from the maps of :func:`models.neurons.units.stage_maps` (one up-pass
    for every stage and layer, stopped after the last stage asked for)."""
    top = max(s for s, _ in keys)
    out = {}
    for s, maps in stage_maps(stack, frames):
        out.update({(s, layer): maps[layer].flatten(1) for k, layer in keys if k == s})
        if s == top:
            break
    return out


class LayerScanner(TopKScanner):
    """A :class:`cluster.topk.TopKScanner` whose units are ``{(stage, layer): indices}``."""

    def outputs(self, frames: torch.Tensor) -> dict[Key, torch.Tensor]:
        """(stage, layer) -> responses (N, units of that layer) of one batch of uint8 frames."""
        return layer_outputs(self.stack, frames, list(self.units))


def scan_layers(model_path: str, shards: list[str], units: LayerUnits, k: int, *,
                n_actors: int | Callable[[], int], batch_size: int = BATCH_SIZE,
                progress: Callable[[int], None] | None = None,
                driver_helps: bool = True) -> dict[Key, RunningTopK]:
    """Top-k per unit over ``shards`` by ``n_actors`` single-threaded Ray actors (at most one
    per shard; :func:`cluster.topk.scan`: the driver scans while they start), stopped at the
    end. Ray must be initialised, or ``n_actors`` bring it up (:func:`cluster.topk.scan`)."""
    return scan(model_path, shards, units, k, n_actors=n_actors, batch_size=batch_size,
                progress=progress, scanner=LayerScanner, driver_helps=driver_helps)
