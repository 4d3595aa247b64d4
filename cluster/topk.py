"""Top-k frames of a whole dataset for many units, scanned by Ray actors over its shards.

Each actor is a thin shell around :class:`TopKScanner`: it loads ``model.pt`` once, reads the
shards it is given with :mod:`pipeline.reader`, runs the stack's up-pass per batch and keeps a
running top-k per unit (:class:`models.neurons.topk.RunningTopK`). The driver hands each actor a
disjoint round-robin part of the shards (``shards_for_worker``), collects the states and merges
them: the merge of per-part top-k lists is the top-k of the whole dataset. A frame is identified by
``shard_index << 32 | row``; :func:`fetch_frames` reads the winners' pixels and provenance back.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from cluster.ps import ONE_THREAD_ENV
from cluster.state_io import read_trained_stack
from models.neurons.topk import RunningTopK
from models.neurons.units import stage_outputs
from pipeline.reader import read_frames, shards_for_worker
from pipeline.records import shard_rows

Units = dict[int, list[int]]  # stage -> flat indices of its pooled units
ROW_BITS = 32


class TopKScanner:
    """Running top-``k`` frames per unit over the shards passed to :meth:`scan`.

    Parameters
    ----------
    model_path : a run's ``model.pt``.
    units : stage -> pooled-unit indices to track.
    k : frames kept per unit.
    batch_size : frames per up-pass.
    n_threads : torch threads (1 inside an actor that holds one CPU; 0 keeps torch's default).
    """

    def __init__(self, model_path: str, units: Units, k: int, batch_size: int = 256,
                 n_threads: int = 1) -> None:
        if n_threads:
            torch.set_num_threads(n_threads)
        self.stack, _ = read_trained_stack(model_path)
        self.units = {s: torch.tensor(ix, dtype=torch.long) for s, ix in units.items()}
        self.state = {s: RunningTopK(len(ix), k) for s, ix in units.items()}
        self.batch_size = batch_size

    def scan(self, shard_index: int, path: str) -> int:
        """Add one shard's frames; returns how many."""
        frames = read_frames(os.path.dirname(path), shards=[path])  # (N, C, H, W) uint8
        top = max(self.units)
        for lo in range(0, len(frames), self.batch_size):
            batch = torch.from_numpy(frames[lo : lo + self.batch_size])
            outs = stage_outputs(self.stack, batch, top)
            ids = (shard_index << ROW_BITS) + torch.arange(lo, lo + len(batch))
            for s, ix in self.units.items():
                self.state[s].update(outs[s].flatten(1)[:, ix], ids)
        return len(frames)

    def result(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """stage -> (values (U, k), frame ids (U, k))."""
        return {s: (t.values.numpy(), t.ids.numpy()) for s, t in self.state.items()}


def merge(results: list[dict[int, tuple[np.ndarray, np.ndarray]]],
          k: int) -> dict[int, RunningTopK]:
    """One top-k per stage from several scanners' results."""
    merged: dict[int, RunningTopK] = {}
    for res in results:
        for s, (values, ids) in res.items():
            if s not in merged:
                merged[s] = RunningTopK(values.shape[0], k)
            merged[s].merge(torch.tensor(values), torch.tensor(ids))
    return merged


def start_scanners(model_path: str, units: Units, k: int, *, n_actors: int,
                   batch_size: int = 256) -> list:
    """``n_actors`` scanner actors (one CPU and one thread each: ``cluster.ps.ONE_THREAD_ENV``),
    returned once each has loaded the model. Ray must be initialised."""
    import ray

    actor_cls = ray.remote(num_cpus=1, runtime_env=ONE_THREAD_ENV)(TopKScanner)
    actors = [actor_cls.remote(model_path, units, k, batch_size) for _ in range(n_actors)]
    ray.get([a.result.remote() for a in actors])  # the constructors have run
    return actors


def scan_shards(actors: list, shards: list[str], k: int,
                progress: Callable[[int], None] | None = None) -> dict[int, RunningTopK]:
    """Each actor scans its round-robin part of ``shards``; the merged top-k per unit.
    ``progress`` is called with each finished shard's frame count (e.g. a tqdm's ``update``)."""
    import ray

    index = {p: i for i, p in enumerate(shards)}
    pending = [a.scan.remote(index[p], p) for w, a in enumerate(actors)
               for p in shards_for_worker(shards, w, len(actors))]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        n = ray.get(done[0])
        if progress is not None:
            progress(n)
    return merge(ray.get([a.result.remote() for a in actors]), k)


def scan_with_actors(model_path: str, shards: list[str], units: Units, k: int, *,
                     n_actors: int, batch_size: int = 256,
                     progress: Callable[[int], None] | None = None) -> dict[int, RunningTopK]:
    """Top-k per unit over ``shards`` by ``n_actors`` Ray actors in parallel (at most one per
    shard), stopped at the end."""
    import ray

    actors = start_scanners(model_path, units, k, n_actors=max(1, min(n_actors, len(shards))),
                            batch_size=batch_size)
    try:
        return scan_shards(actors, shards, k, progress)
    finally:
        for a in actors:
            ray.kill(a)


def scan_in_process(model_path: str, shards: list[str], units: Units, k: int, *,
                    batch_size: int = 256, n_threads: int = 0) -> dict[int, RunningTopK]:
    """The same scan in this process, one shard after another (the baseline; no Ray)."""
    scanner = TopKScanner(model_path, units, k, batch_size, n_threads=n_threads)
    for i, p in enumerate(shards):
        scanner.scan(i, p)
    return merge([scanner.result()], k)


def fetch_frames(ids: np.ndarray, shards: list[str]) -> dict[int, tuple[np.ndarray, dict]]:
    """frame id -> (uint8 frame (C, H, W), {"source", "frame_index", "shard", "row"}), reading
    each shard once."""
    by_shard: dict[int, list[int]] = {}
    for fid in {int(i) for i in np.asarray(ids).ravel()}:
        by_shard.setdefault(fid >> ROW_BITS, []).append(fid & ((1 << ROW_BITS) - 1))
    out: dict[int, tuple[np.ndarray, dict]] = {}
    for s, rows in by_shard.items():
        frames, info = shard_rows(shards[s], rows)
        for row, frame, meta in zip(rows, frames, info, strict=True):
            out[(s << ROW_BITS) | row] = (frame, {**meta, "shard": shards[s], "row": row})
    return out
