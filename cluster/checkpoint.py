"""A stage's checkpoints: what every shard and worker resumes from.

Layout (under a run folder that is a local path or a URI, :mod:`pipeline.storage`)::

    RUN/checkpoints/stage{k}/step{t:08d}/shard{j}.pt   one per parameter-server shard
    RUN/checkpoints/stage{k}/step{t:08d}/meta.pt       step, layout, per-worker data positions,
                                                      push sequence numbers and RBM state
    RUN/checkpoints/stage{k}/LATEST                    the name of the newest complete folder

A checkpoint is complete when ``LATEST`` names it: the shard files and ``meta.pt`` are written
first, then ``LATEST`` is published. Everything in it is tensors and plain values
(:mod:`cluster.state_io`: nothing in a checkpoint can run code).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from cluster.ps import ParameterShard
from cluster.sharding import ShardLayout, to_numpy
from cluster.state_io import read_state, write_state
from models.rbm.dense import RBMBase
from pipeline import storage


def step_folder(stage_dir: str | os.PathLike, step: int) -> str:
    """The folder of the checkpoint at ``step``."""
    return storage.join(stage_dir, f"step{step:08d}")


def read_meta(folder: str | os.PathLike) -> dict:
    """A checkpoint's ``meta.pt``."""
    return read_state(storage.join(folder, "meta.pt"))


def write_meta(folder: str, *, stage: int, step: int, config_text: str, layout: ShardLayout,
               positions: Sequence, seqs: Sequence[int], worker_steps: Sequence[int],
               local_states: Sequence | None = None) -> dict:
    """Write ``meta.pt`` (after the shard files) and point ``LATEST`` at ``folder``."""
    meta = {"stage": stage, "step": step, "config": config_text, "layout": layout.to_dict(),
            "positions": [list(p) for p in positions], "seqs": list(seqs),
            "worker_steps": list(worker_steps),
            "local_states": list(local_states or [None] * len(positions)), "time": time.time()}
    write_state(storage.join(folder, "meta.pt"), meta)  # numpy arrays stored as tensors
    stage_dir, name = folder.rstrip("/").rsplit("/", 1)
    storage.write_text(storage.join(stage_dir, "LATEST"), name)
    return meta


def write_initial(stage_dir: str, stage: int, rbm: RBMBase, layout: ShardLayout, *,
                  n_workers: int, config_text: str, shards_add: bool) -> dict:
    """The step-0 checkpoint of a fresh stage, written in this process: every shard holds its
    slices of ``rbm``'s initial parameters and a fresh optimiser; every worker starts at the
    beginning of its data. Shard actors then start from it (by path, so Ray can restart them
    without their constructor arguments living in the object store)."""
    folder = step_folder(stage_dir, 0)
    storage.makedirs(folder)
    full = to_numpy(rbm.params)
    for j in range(layout.n_ps_shards):
        shard = ParameterShard(j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names),
                               layout.split(full, j), deltas=shards_add)
        shard.save(storage.join(folder, f"shard{j}.pt"))
    return write_meta(folder, stage=stage, step=0, config_text=config_text, layout=layout,
                      positions=[(0, 0)] * n_workers, seqs=[0] * n_workers,
                      worker_steps=[0] * n_workers)
