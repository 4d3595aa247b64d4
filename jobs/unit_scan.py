"""Top-k frames of a whole dataset for units of any layer, scanned by Ray actors.

:class:`cluster.topk.TopKScanner` tracks pooled units (keyed by stage); :class:`LayerScanner`
keys them by ``(stage, layer)`` so the hidden units ``catneuron evaluate`` may name as the best
(the RBM's ``P(h = 1 | v)`` before pooling) get their top frames too. Sharding, merging and frame
ids are :mod:`cluster.topk`'s (``shard_index << 32 | row``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from cluster.ps import ONE_THREAD_ENV
from cluster.topk import ROW_BITS, TopKScanner, scan_shards
from models.neurons.topk import RunningTopK
from models.neurons.units import stage_outputs
from pipeline.reader import read_frames

Key = tuple[int, str]  # (stage, layer)
LayerUnits = dict[Key, list[int]]


@torch.no_grad()
def layer_outputs(stack, frames: torch.Tensor, keys: list[Key]) -> dict[Key, torch.Tensor]:
    """(N, units) responses of every ``(stage, layer)`` in ``keys`` to one batch of frames:
    pooled from :func:`models.neurons.units.stage_outputs`, hidden as
    ``rbm_s.mean_hiddens(stack.stage_input(frames, s))``."""
    top = max(s for s, _ in keys)
    pooled = stage_outputs(stack, frames, top)
    out = {}
    for s, layer in keys:
        if layer == "pooled":
            out[(s, layer)] = pooled[s].flatten(1)
        else:
            out[(s, layer)] = stack.rbms[s].mean_hiddens(stack.stage_input(frames, s)).flatten(1)
    return out


class LayerScanner(TopKScanner):
    """A :class:`cluster.topk.TopKScanner` whose units are ``{(stage, layer): indices}``."""

    def scan(self, shard_index: int, path: str) -> int:
        """Add one shard's frames; returns how many."""
        frames = read_frames(os.path.dirname(path), shards=[path])  # (N, C, H, W) uint8
        keys = list(self.units)
        for lo in range(0, len(frames), self.batch_size):
            batch = torch.from_numpy(frames[lo : lo + self.batch_size])
            outs = layer_outputs(self.stack, batch, keys)
            ids = (shard_index << ROW_BITS) + torch.arange(lo, lo + len(batch))
            for key, ix in self.units.items():
                self.state[key].update(outs[key][:, ix], ids)
        return len(frames)


def scan_layers(model_path: str, shards: list[str], units: LayerUnits, k: int, *,
                n_actors: int, batch_size: int = 256,
                progress: Callable[[int], None] | None = None) -> dict[Key, RunningTopK]:
    """Top-k per unit over ``shards`` by ``n_actors`` single-threaded Ray actors (at most one
    per shard), stopped at the end. Ray must be initialised."""
    import ray

    n = max(1, min(n_actors, len(shards)))
    actor_cls = ray.remote(num_cpus=1, runtime_env=ONE_THREAD_ENV)(LayerScanner)
    actors = [actor_cls.remote(model_path, units, k, batch_size) for _ in range(n)]
    try:
        return scan_shards(actors, shards, k, progress)
    finally:
        for a in actors:
            ray.kill(a)
