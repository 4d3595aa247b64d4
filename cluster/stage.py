"""One stage's actors: the parameter-server shards and the worker replicas, started together.

:func:`start_stage` is the one place a stage's actors are assembled (the trainer, the
parameter-server benchmark and the tests use it). Every actor starts from files: the shards
from the stage's latest checkpoint (a fresh stage first writes its step-0 checkpoint in this
process), the workers from that checkpoint's ``meta.pt`` and the run's ``model.pt``; workers
find the shards by name. Nothing an actor is built from lives in Ray's object store (large
arrays and actor handles would), so a restart by Ray (``max_restarts``) never fails for want of
its constructor arguments, and a restarted shard restores the newest checkpoint.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import ray
import torch

from cluster.checkpoint import latest_checkpoint, step_folder, write_meta
from cluster.config import JobSections
from cluster.liveness import StageWatch
from cluster.ps import ParameterShard, shard_actor_class
from cluster.push import shards_add
from cluster.sharding import ShardLayout, to_numpy
from cluster.worker import split_holdout, worker_actor_class
from models.kernels.threads import cpu_threads
from models.rbm.dense import RBMBase
from models.stack import RBMStack
from pipeline import storage
from pipeline.reader import read_frames

SPREAD = "SPREAD"
"""Ray's scheduling strategy for shards and workers: spread over the cluster's nodes (round
robin), so a parameter server's traffic and the replicas' compute use every node's network and
cores, and a dead node takes only its share of the actors with it. One machine: no effect."""

PREPARE_THREADS = 2
"""CPU threads of a stage's preparation, whatever the machine has: a whitening fit's products
and QR factorisations round differently with another thread count (the BLAS splits their sums
among its threads), so at torch's default, one thread per core, the same config and seed
trained another model on a machine with another number of cores."""


@dataclass
class StageActors:
    """The live actors of one stage, and the shards' process ids when they started (a shard
    whose id changed was restarted by Ray and restored a checkpoint). ``checkpoint``: the
    folder the workers were started from; a worker Ray restarts reads it again, so it is kept
    for the stage's life."""

    stage: int
    stage_dir: str
    layout: ShardLayout
    shards: list
    workers: list
    shard_pids: list[int]
    checkpoint: str = ""

    def record_pids(self) -> None:
        """Remember the shards' process ids (call once every shard answers)."""
        self.shard_pids = [i["pid"] for i in ray.get([s.info.remote() for s in self.shards])]

    def restarted_shards(self, infos: list[dict]) -> list[dict]:
        """Of the shards' ``info()`` now (one per shard, in order), those of the shards Ray
        restarted since the stage started (their process id changed)."""
        return [i for i, pid in zip(infos, self.shard_pids, strict=True) if i["pid"] != pid]

    def kill(self) -> None:
        """End every actor of the stage (no restart)."""
        for actor in self.workers + self.shards:
            ray.kill(actor, no_restart=True)


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


def start_stage(job: JobSections, stage: int, rbm: RBMBase, stage_dir: str | os.PathLike, *,
                config_text: str = "", stack_path: str | None = None,
                worker_cpus: float = 1.0, wait: bool = True) -> StageActors:
    """Start ``job.train.n_ps_shards`` shards and ``job.train.n_workers`` workers for ``stage``.

    ``rbm`` is the stage's model with its initial parameters (used when ``stage_dir`` has no
    checkpoint yet: the step-0 checkpoint is then written from it). Workers continue from the
    latest checkpoint's data positions and RBM state. Returns once every actor answers, or at
    once without ``wait`` (the caller then waits, as the trainer does through
    :mod:`cluster.liveness`, and calls :meth:`StageActors.record_pids`).
    """
    job = job.for_stage(stage)  # the workers and the schedule see this stage's periods
    tc = job.train
    stage_dir = str(stage_dir)
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, tc.n_ps_shards)
    adds = tc.mode == "async" and shards_add(tc.push)
    if latest_checkpoint(stage_dir) is None:
        write_initial(stage_dir, stage, rbm, layout, n_workers=tc.n_workers,
                      config_text=config_text, shards_add=adds)
    checkpoint = latest_checkpoint(stage_dir) or step_folder(stage_dir, 0)
    names = [f"catneuron-{uuid.uuid4().hex[:12]}-stage{stage}-shard{j}"
             for j in range(tc.n_ps_shards)]
    shard_cls = shard_actor_class()
    shards = [shard_cls.options(name=name, scheduling_strategy=SPREAD).remote(
                  j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names), None,
                  stage_dir, deltas=adds)
              for j, name in enumerate(names)]
    worker_cls = worker_actor_class().options(num_cpus=worker_cpus, scheduling_strategy=SPREAD)
    workers = [worker_cls.remote(k, job, stage, layout.to_dict(),
                                 shards=names if tc.mode == "async" else (),
                                 checkpoint=checkpoint, stack_path=stack_path)
               for k in range(tc.n_workers)]
    actors = StageActors(stage, stage_dir, layout, shards, workers, [], checkpoint)
    if wait:
        ray.get([w.ping.remote() for w in workers])
        actors.record_pids()
    return actors


def prepare_stage(job: JobSections, stack: RBMStack, stage: int) -> int:
    """Fit stage ``stage``'s data-fitted parts (whitening, initial units: ``RBMStack.prepare``)
    on the first ``train.prepare_frames`` training frames, seeded by the job; the number of
    frames used (0: the stage fits nothing). The trainer's driver and the one-process reference
    both prepare through here, so they start from the same stage; on ``PREPARE_THREADS``
    threads, so the stage is the same on a machine with any number of cores."""
    if not stack.stages[stage].needs_data:
        return 0
    train, _ = split_holdout(job.data.path, job.data.holdout_frames)
    frames = read_frames(job.data.path, shards=train, limit=job.train.prepare_frames)
    g = torch.Generator().manual_seed(job.train.seed * 7919 + stage)
    with cpu_threads(PREPARE_THREADS):
        stack.prepare(stage, torch.from_numpy(frames), weights="exemplar", generator=g)
    return len(frames)


def get_from_shards(watch: StageWatch, where: str, make_refs: Callable[[], list],
                    poll_s: float = 0.5) -> list:
    """``ray.get(make_refs())`` of calls to the stage's shards, never blocked on a lost shard.

    A call sent to a shard whose node is gone waits for Ray to restart the shard, which may be
    never (no node has room). So the calls go out once every shard answers, and while they are
    pending ``watch`` keeps probing: what a lost shard waits for goes in the run's log, and the
    run fails with one line (``PlacementTimeout``) once it has been down for longer than
    ``train.placement_timeout_s``. Calls that failed because a shard died are sent again. For
    the asynchronous schedule and the end of a stage only: a restarted shard has restored the
    last checkpoint, which the synchronous schedule must roll every actor back to instead.
    """
    while True:
        watch.await_running(where, watch.shards)
        refs = make_refs()
        while ray.wait(refs, num_returns=len(refs), timeout=poll_s)[1]:
            watch.poll(where, report_back=False, needed=watch.shards)
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError:
            continue  # lost meanwhile: await_running marks it down from now on
