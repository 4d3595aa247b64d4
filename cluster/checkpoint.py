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
import re
import time
from collections.abc import Sequence

from cluster.sharding import ShardLayout
from cluster.state_io import read_state, write_state
from pipeline import storage


class CheckpointError(ValueError):
    """A run folder's checkpoint that this run cannot resume from (a ``LATEST`` naming something
    else than a checkpoint folder, another number of shards or workers): the user's to fix,
    shown as one line."""


def step_folder(stage_dir: str | os.PathLike, step: int) -> str:
    """The folder of the checkpoint at ``step``."""
    return storage.join(stage_dir, f"step{step:08d}")


def latest_checkpoint(stage_dir: str | os.PathLike) -> str | None:
    """The newest complete checkpoint folder of a stage (named by its ``LATEST`` file, which
    is published after the folder's files); a path or URI like ``stage_dir``."""
    pointer = storage.join(stage_dir, "LATEST")
    if not storage.exists(pointer):
        return None
    name = storage.read_text(pointer).strip()
    if not re.fullmatch(r"step\d+", name):  # a plain name inside the stage folder, nothing else
        raise CheckpointError(f"{pointer} names {name!r}, not a checkpoint folder of this stage")
    folder = storage.join(stage_dir, name)
    return folder if storage.list_files(folder) else None


def prune(stage_dir: str | os.PathLike, keep: int, protect: str = "") -> list[str]:
    """Delete all but the newest ``keep`` step folders of a stage (none when ``keep`` is 0),
    never the one ``LATEST`` names nor ``protect`` (a folder path or name: the one the
    stage's workers started from, which a restarted worker reads again); the deleted folders'
    names."""
    if keep < 1:
        return []
    latest = storage.read_text(storage.join(stage_dir, "LATEST")).strip()
    kept = {latest, str(protect).rstrip("/").rsplit("/", 1)[-1]}
    steps = sorted(n for n in storage.list_dirs(stage_dir) if re.fullmatch(r"step\d+", n))
    old = [n for n in steps[:-keep] if n not in kept]
    for name in old:
        storage.delete_tree(storage.join(stage_dir, name))
    return old


META_FIELDS = {"stage": int, "step": int, "config": str, "layout": dict, "positions": list,
               "seqs": list, "worker_steps": list, "local_states": list}
"""What :func:`write_meta` writes and a resumed run reads, with each one's type."""


def read_meta(folder: str | os.PathLike) -> dict:
    """A checkpoint's ``meta.pt``, its fields checked (:data:`META_FIELDS`, a step >= 0, one
    position of two numbers per worker): :class:`CheckpointError` for one that is not."""
    path = storage.join(folder, "meta.pt")
    meta = read_state(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} holds a {type(meta).__name__}, not a checkpoint's fields")
    for key, kind in META_FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: {key!r} is {value!r:.40}, not a {kind.__name__}: "
                                  "not a checkpoint this run can resume from")
    if meta["step"] < 0 or not all(isinstance(p, list | tuple) and len(p) == 2
                                   for p in meta["positions"]):
        raise CheckpointError(f"{path}: its step or worker positions are not a checkpoint's")
    return meta


def write_meta(folder: str, *, stage: int, step: int, config_text: str, layout: ShardLayout,
               positions: Sequence, seqs: Sequence[int], worker_steps: Sequence[int],
               local_states: Sequence | None = None, arithmetic: str = "") -> dict:
    """Write ``meta.pt`` (after the shard files) and point ``LATEST`` at ``folder``.
    ``arithmetic``: the distinct arithmetics of the stage's processes
    (:func:`models.kernels.arithmetic.describe`, joined by ``; ``), so that a resume on other
    kernels can say it will not repeat bit for bit."""
    meta = {"stage": stage, "step": step, "config": config_text, "layout": layout.to_dict(),
            "positions": [list(p) for p in positions], "seqs": list(seqs),
            "worker_steps": list(worker_steps),
            "local_states": list(local_states or [None] * len(positions)), "time": time.time(),
            "arithmetic": arithmetic}
    write_state(storage.join(folder, "meta.pt"), meta)  # numpy arrays stored as tensors
    stage_dir, name = folder.rstrip("/").rsplit("/", 1)
    storage.write_text(storage.join(stage_dir, "LATEST"), name)
    return meta
