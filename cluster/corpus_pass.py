"""The top stage's best frames over the whole dataset, scored by the training workers before
they stop.

``catneuron evaluate`` (the corpus share of its headline unit) and ``catneuron visualize`` (the
units' top frames) need every unit of the top stage ranked over every frame of the dataset. Run
from scratch, that pass sends each frame through every stage again; for a competitive stage at
several sizes it is most of evaluate's time. At the end of the top stage the workers already
hold that work: each keeps its shards' frames and their stage input (its
:class:`models.read_cache.ReadCache`), so with the trained parameters they score their own
frames for the price of the top stage alone (:meth:`cluster.worker.Worker.corpus_tops`). Worker
0 also scores the held-out shards, which no worker trains on; the partial top-k lists are
merged here.

The result is an optimisation, never a requirement: a worker that fails or is lost makes
:func:`score_corpus` return None, and the jobs scan the dataset themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import ray

from cluster.config import DataConfig
from cluster.topk import shard_row_counts
from cluster.worker import split_holdout
from models.neurons.topk import RunningTopK
from pipeline.reader import list_shards, shards_for_worker


@dataclass(frozen=True)
class CorpusTops:
    """Stage ``stage``'s top-k frames per unit (``{layer: RunningTopK}``) over ``shards``
    (``rows`` frames each); a frame's id is its row in the shards' frames read in order."""

    stage: int
    tops: dict[str, RunningTopK]
    shards: list[str]
    rows: list[int]


def worker_parts(data: DataConfig, n_workers: int
                 ) -> tuple[list[list[tuple[str, int]]], list[str], list[int]]:
    """What each worker scores, as ``(shard path, id of its first frame)`` pairs: its own
    training shards (:func:`pipeline.reader.shards_for_worker`, as the worker reads them), and
    for worker 0 the held-out shards too; then every shard of the dataset and its row count."""
    shards = list_shards(data.path)
    rows = shard_row_counts(shards)
    first = dict(zip(shards, np.cumsum([0, *rows[:-1]]).tolist(), strict=True))
    train, held = split_holdout(data.path, data.holdout_frames)
    parts = [[(s, first[s]) for s in shards_for_worker(train, k, n_workers)]
             for k in range(n_workers)]
    parts[0] += [(s, first[s]) for s in held]
    return parts, shards, rows


def merge(stage: int, answers: Sequence[Mapping[str, tuple[np.ndarray, np.ndarray]]], k: int,
          shards: list[str], rows: list[int]) -> CorpusTops:
    """The workers' partial top-k lists (:meth:`cluster.worker.Worker.corpus_tops`) as one."""
    tops: dict[str, RunningTopK] = {}
    for answer in answers:
        for layer, (values, ids) in answer.items():
            tops.setdefault(layer, RunningTopK(len(values), k)).merge(values, ids)
    return CorpusTops(stage, tops, shards, rows)


def score_corpus(workers: Sequence, params: Mapping[str, np.ndarray], data: DataConfig,
                 stage: int, k: int, max_units: int, timeout_s: float) -> CorpusTops | None:
    """Every unit's top ``k`` frames of the dataset (layers of at most ``max_units`` units),
    scored by the stage's worker actors with the trained ``params``; None when a worker does
    not answer within ``timeout_s`` or fails, or no layer is that narrow."""
    parts, shards, rows = worker_parts(data, len(workers))
    refs = [w.corpus_tops.remote(params, part, k, max_units)
            for w, part in zip(workers, parts, strict=True)]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if len(ready) < len(refs):
        return None
    try:
        answers = ray.get(refs)
    except ray.exceptions.RayError:
        return None
    if not any(answers):  # every layer wider than max_units
        return None
    return merge(stage, answers, k, shards, rows)
