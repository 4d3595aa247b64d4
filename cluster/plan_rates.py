"""What ``catneuron plan`` measures on this machine to size a job: the rates its model multiplies.

- :func:`measure_gflops_per_core`: one core's achieved GFLOP/s on a CD-1 step at the demo's
  local-RBM geometry. The plan turns a stage's FLOPs into seconds with it, whatever its size.
- :func:`measure_stage_steps`: a stage's whole step in one process on one core, input included
  (a worker's loop without the parameter server: :class:`cluster.reference.SingleProcessLoop`,
  the baseline ``benchmarks/ps.py`` compares with). Small steps are not arithmetic: reading,
  normalising and sampling a batch cost more than the learner's FLOPs, so a stack that can be
  built here is better sized by its measured step than by its FLOPs.

A shard call's cost (serialising a push, the round trip, deserialising the parameters) is the
third term of the plan's step (``call_s``); ``benchmarks/plan_check.py`` measures it with Ray
actors on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

MEASURED_HOW = "measured here: 1 torch thread and 1 numba thread, CD-1 on the demo's stage 0"


def measure_gflops_per_core(seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of one core on a CD-1 step of a local RBM at the demo's first stage
    (64x64 input, 10x10 fields, stride 2, 8 maps, batch 64).

    One core means one torch thread *and* one numba thread (the local RBM's CPU kernels are
    numba ``parallel=True``; with the whole numba pool the figure would follow the machine's
    core count and load, not a core's speed). Both counts are restored afterwards.
    """
    from models.rbm.local import LocalRBM

    with one_core():
        g = torch.Generator().manual_seed(0)
        rbm = LocalRBM((1, 64, 64), 10, 2, 8, visible="gaussian", generator=g, device="cpu")
        v = torch.randn(64, 1, 64, 64, generator=g)
        rbm.compute_update(v, generator=g)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rbm.compute_update(v, generator=g)
            n += 1
        dt = time.perf_counter() - t0
    flops = 64 * 5 * 2 * 28 * 28 * 8 * 100  # batch * (3 + 2k) * 2PKD, k = 1
    return n * flops / dt / 1e9


def measure_stage_steps(config: Any, stages: list[int] | None = None, *, steps: int = 40,
                        warmup: int = 8, max_warmup: int = 400) -> dict[int, float]:
    """Seconds per step of each stage of ``stages`` (default: all) in one process on one core:
    read a batch from ``config.data.path``, the stage's input (the stages below untrained:
    the same arithmetic), the learner's update. A stage above 0 first fills its input cache
    with every training frame, as a worker does before its first step. The steady step is
    what is priced, so the warm-up runs an epoch (at least ``warmup``, at most ``max_warmup``
    steps): a worker decodes its shards' Parquet in its first epoch only, and keeps the frames
    after (``train.frame_cache_mb``). Raises FileNotFoundError without the dataset."""
    from cluster.reference import SingleProcessLoop

    out = {}
    with one_core():
        for stage in stages if stages is not None else range(len(config.model.stages)):
            loop = SingleProcessLoop(config, stage)
            loop.fill_cache()
            loop.run(min(max(warmup, loop.epoch_steps()), max_warmup))
            out[stage] = loop.run(steps)["seconds"] / steps
    return out


@contextmanager
def one_core() -> Iterator[None]:
    """One torch thread and one numba thread inside, subnormal floats flushed as a worker
    flushes them (:func:`cluster.worker.compute_on_this_thread`); the thread counts before and
    IEEE arithmetic restored after."""
    from cluster.worker import compute_on_this_thread

    threads, numba_threads = torch.get_num_threads(), _numba_threads(None)
    compute_on_this_thread()
    _numba_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
        _numba_threads(numba_threads)


def _numba_threads(n: int | None) -> int | None:
    """Set numba's thread count to ``n`` (None: leave it); the count before (None: no numba)."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    before = numba.get_num_threads()
    if n is not None:
        numba.set_num_threads(n)
    return before
