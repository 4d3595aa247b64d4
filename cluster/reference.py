"""Single-process trainers: the reference a synchronous parameter-server run must equal, and the
baseline the parameter-server benchmark compares against.

:func:`sync_reference` runs the synchronous schedule with no Ray and no sharding: ``n_workers``
replicas (each its own RBM state: sparsity estimate, persistent chain) read the same batches in
the same order as the Ray workers (the same disjoint shard split, reader seeds and per-step
generator seeds), their updates are averaged in worker order and one full-size
``ParameterUpdater`` applies them (``rbm.apply_update``), exactly what the models package does in
a plain training loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from cluster.config import JobSections
from cluster.sharding import combine_updates
from cluster.stage import prepare_stage
from cluster.worker import (
    BatchStream,
    cache_budget,
    compute_on_this_thread,
    fill_stage_cache,
    frame_cache_bytes,
    input_seed,
    split_holdout,
    step_seed,
)
from models.read_cache import StageInput
from models.stack import RBMStack
from pipeline.reader import FrameReader, shards_for_worker


def _batches(config: JobSections, shards: list[str], seed: int, replicas: int = 1) -> Iterator:
    """Worker batches over epochs, as a worker's :class:`cluster.worker.BatchStream` gives them
    (reader seed ``seed + epoch``, last partial batch dropped), the decoded shards kept as
    ``replicas`` workers' frame caches together keep them."""
    stream = BatchStream(config.data, shards, seed,
                         frame_cache_bytes=frame_cache_bytes(config.train, replicas))
    while True:
        yield stream.next()


def sync_reference(config: JobSections, stage: int = 0, steps: int | None = None,
                   stack: RBMStack | None = None, device: str = "cpu") -> RBMStack:
    """Train ``stage`` of a stack for ``steps`` synchronous steps in one process.

    ``stack`` (earlier stages trained) defaults to a fresh stack seeded like the Ray trainer's.
    ``device`` is where the replicas compute (random streams differ between CPU and CUDA
    generators, so compare runs on the same device). Returns the stack with the stage trained.
    """
    tc = config.train
    steps = tc.steps if steps is None else steps
    if stack is None:
        # initialised on CPU like the trainer's driver stack (a CUDA init draws other numbers)
        stack = RBMStack(config.model, update=config.update,
                         generator=torch.Generator().manual_seed(tc.seed), device="cpu")
        if torch.device(device).type != "cpu":
            moved = RBMStack(config.model, update=config.update, device=device)
            moved.load_state_dict(stack.state_dict())
            stack = moved
    prepare_stage(config, stack, stage)  # as the trainer's driver does before the actors start
    master = stack.rbms[stage]
    replicas = []
    for _ in range(tc.n_workers):  # each replica has its own q / chain, like a Ray worker
        r = RBMStack(config.model, update=config.update, device=device).rbms[stage]
        r.params = {k: v.clone() for k, v in master.params.items()}  # (learner parameters only)
        replicas.append(r)
    train, _ = split_holdout(config.data.path, config.data.holdout_frames)
    streams = [_batches(config, shards_for_worker(train, k, tc.n_workers), tc.seed * 7919 + k)
               for k in range(tc.n_workers)]
    # read as the workers read (one cache serves all replicas: its values depend on frames only)
    reader = StageInput(stack, stage, cache_budget(tc, stage, tc.n_workers))
    for step in range(steps):
        updates = []
        for k, (rbm, stream) in enumerate(zip(replicas, streams, strict=True)):
            for name, p in rbm.params.items():
                p.copy_(master.params[name])
            rows = torch.Generator(device=device).manual_seed(input_seed(tc.seed, stage, k, step))
            v = reader.rows(next(stream), rows)
            g = torch.Generator(device=device).manual_seed(step_seed(tc.seed, stage, k, step))
            updates.append(rbm.compute_update(v, generator=g))
        master.apply_update(combine_updates(updates))
    return stack


class SingleProcessLoop:
    """The benchmark's baseline: the plain loop ``apply_update(compute_update(stage_input(batch)))``
    for stage ``stage`` on one torch thread over the training shards, kept alive between timed
    segments (so a benchmark can interleave it with the parameter-server runs it is compared to).
    The stage input is read as a worker reads it (:class:`models.read_cache.StageInput`, for a
    stage above 0 with ``train.read_cache_mb`` per worker whose frames it reads): after
    :meth:`fill_cache` it encodes no frame again.

    ``stack`` (earlier stages loaded, stage ``stage`` prepared) is trained in place; by default a
    fresh stack seeded like the trainer's, its stage prepared by :func:`prepare_stage` (whitening
    and initial units of a stage that fits them to data), as the trainer's driver does.
    """

    def __init__(self, config: JobSections, stage: int = 0,
                 stack: RBMStack | None = None) -> None:
        compute_on_this_thread()  # as a worker computes
        if stack is None:
            stack = RBMStack(config.model, update=config.update,
                             generator=torch.Generator().manual_seed(config.train.seed),
                             device="cpu")
            prepare_stage(config, stack, stage)
        self.stack = stack
        self.stage = stage
        self.rbm = self.stack.rbms[stage]
        self.input = StageInput(stack, stage, cache_budget(config.train, stage,
                                                           config.train.n_workers))
        train, _ = split_holdout(config.data.path, config.data.holdout_frames)
        self.stream = _batches(config, train, config.train.seed, config.train.n_workers)
        self.generator = torch.Generator().manual_seed(0)
        self._data_path, self._train = config.data.path, train
        self._batch_size = config.data.batch_size

    def epoch_steps(self) -> int:
        """Steps in one epoch of the training shards (the last partial batch dropped): after
        that many, every shard the frame cache keeps has been decoded once."""
        batch = self._batch_size
        return max(1, FrameReader(self._data_path, batch_size=batch, shards=self._train)
                   .num_rows() // batch)

    def fill_cache(self) -> int:
        """Encode the training frames into the stage-input cache before the first step, as a
        worker does (:meth:`cluster.worker.Worker.fill_cache`); how many it holds. Without it an
        epoch of steps does not read every frame (each epoch drops its last partial batch, in its
        own shuffle), and a frame first read in a timed step costs its whole encoding there."""
        return fill_stage_cache(self.input, self._data_path, self._train)

    def run(self, steps: int) -> dict:
        """Time ``steps`` steps: frames, seconds, frames/s and the ``perf_counter`` stamps of the
        first and last moment (system-wide clock, comparable across processes)."""
        frames = 0
        t0 = time.perf_counter()
        for _ in range(steps):
            v = self.input.rows(next(self.stream), self.generator)
            self.rbm.apply_update(self.rbm.compute_update(v, generator=self.generator))
            frames += len(v)
        t1 = time.perf_counter()
        return {"frames": frames, "seconds": t1 - t0, "frames_per_s": frames / (t1 - t0),
                "start": t0, "end": t1}

