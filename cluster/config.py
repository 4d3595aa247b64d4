"""Configs of the distributed trainer: data feed, parameter-server schedule, local simulation.

These are sections ``[data]``, ``[train]`` and ``[sim]`` of a job config (``jobs/config.py``
composes them with the models package's ``StackConfig`` and ``UpdateConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from models.rbm.optim import UpdateConfig
from models.stack import StackConfig


@dataclass(frozen=True)
class DataConfig:
    """Where training frames come from (a dataset folder written by ``catneuron ingest``).

    Attributes
    ----------
    path : dataset folder with ``_manifest.json`` and Parquet shards: a path (relative paths are
        taken relative to the current directory) or a URI such as ``s3://bucket/prefix``
        (:mod:`pipeline.storage`), which every node of a cluster reaches.
    batch_size : frames per worker per step (Le et al. used mini-batches of 100 per replica).
    shuffle_buffer : rows shuffled within a buffer by the reader (0 = manifest order).
    holdout_frames : frames of the held-out shard used to measure the free-energy gap
        (Hinton 2010, "A Practical Guide to Training RBMs", sec. 6): the dataset's last shard
        is held out whole whenever this is > 0 (and there are two shards or more), and at most
        its frames are used; 0 disables it.
    mirror : flip each training frame left-right with probability 1/2, drawn afresh for every
        batch of a worker's stream (:class:`cluster.worker.BatchStream`): a face seen looking
        one way is also seen looking the other, a new training frame for every stage. The
        frames a stage is prepared on (whitening, exemplar start) and the held-out frames are
        not mirrored.
    """

    path: str = "runs/demo/data"
    batch_size: int = 64
    shuffle_buffer: int = 0
    holdout_frames: int = 128
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.shuffle_buffer < 0 or self.holdout_frames < 0:
            raise ValueError("shuffle_buffer and holdout_frames must be >= 0")
        if not self.path.strip():
            raise ValueError("path is empty: give the dataset folder (--data.path=DIR)")


@dataclass(frozen=True)
class TrainConfig:
    """The parameter-server schedule (Dean et al. 2012, DistBelief; Le et al. 2012, sec. 4).

    Attributes
    ----------
    mode : ``"async"`` = Downpour SGD (workers fetch every ``n_fetch`` steps and push every
        ``n_push`` steps, never waiting for each other); ``"sync"`` = all workers' updates of a
        step are combined in worker order and applied once (reproducible).
    n_workers : model replicas (Ray actors, one torch thread each).
    n_ps_shards : parameter-server shards (Ray actors). Positions of a locally connected layer
        (dense: hidden units) are split in contiguous blocks over all shards; the small visible
        bias goes whole to the last shard, which gets correspondingly fewer positions.
    stages : how many stages of the stack to train, greedily (0 = all of ``model.stages``).
    steps : global steps per stage. A sync step = one batch per worker; an async step = one batch
        on one worker (so ``steps`` batches are consumed in either mode per worker-step count).
    n_fetch, n_push : Downpour's fetch and push periods in worker steps: one for every stage, or
        a list with one per stage (``[4, 1]``: stage 0 every 4 steps, stage 1 every step;
        entries past the model's last stage are not used), so a stage whose step is short next
        to a call to a shard (a small tied stage) can call less often than one whose step
        hides the call. When the next step fetches, a push asks for
        the parameters back, so push and fetch are one call per shard and the parameters
        include the worker's own push. Periods > 1 divide the parameter-server traffic by the
        period, at a cost in learning that depends on the optimiser (benchmarks/ps.py and
        ps_quality.py measure both; the README quotes them). :meth:`for_stage` resolves the
        lists to one stage's periods.
        ``momentum_switch_step`` counts applied pushes (gradient pushes) or the replica's own
        steps (delta and average).
    push : async only: what a push carries (:mod:`cluster.push`).

        - ``"gradient"`` (DistBelief's Downpour): the sum of the CD updates since the last push,
          applied by the shard with its optimiser (momentum SGD or per-shard Adagrad). Between
          fetches the replica does not move: a period of ``n`` steps is one step of an ``n``
          times larger batch.
        - ``"delta"`` (read-my-writes, Ho et al. 2013): the replica applies each update with
          its own optimiser and pushes the change of its parameters, which the shard adds. One
          worker then follows the single-process trajectory at any period. With several
          workers the shards add every replica's full step: lower the learning rate or the
          momentum with it.
        - ``"average"`` (asynchronous model averaging): as ``"delta"``, each change weighted by
          ``1 / n_workers``, so the shards move by the mean of the replicas' steps.
    transfer_dtype : async only: the precision of pushes and fetched parameters on the wire.
        ``"bfloat16"`` halves the bytes (and the object-store copies); shards keep and apply
        float32, so the rounding (8 bits of mantissa) is per message and does not accumulate.
    prefetch : async only: request the next fetch one step early so the transfer overlaps the
        step's compute (with ``"gradient"`` pushes the fetched parameters then lack the
        worker's own latest push: one more push period of staleness).
    warm_start_steps : async only: worker 0 trains alone for this many steps before the others
        join (DistBelief's warm start for stability).
    max_in_flight : tasks each worker may have outstanding (bounded in-flight work).
    sync_transport : sync only: how a step reaches the actors. ``"tasks"``: two Ray task calls
        a step (every worker's ``compute``, then each shard's ``apply_sync``), sent through
        ObjectRefs. ``"compiled"``: the same step as one Ray Compiled Graph, compiled once per
        stage, whose actors pass the update and parameters through shared-memory channels
        instead of calls (:mod:`cluster.drivers.compiled`). The arithmetic is the same, so both
        train the same parameters bit for bit. The graph's actors poll their channels while
        they wait, so it pays where every worker and shard has a core of its own, and costs
        where they share cores (the README's figures). Only while every worker and shard is
        on the driver's node: otherwise the steps go through the tasks, and the run's events
        say so (a graph across nodes hung here).
    checkpoint_every : global steps between checkpoints (0 = only at the end of each stage).
    keep_checkpoints : the newest checkpoints of a stage kept; older ones are deleted once a
        newer one is published (0 = keep every one), except the one the stage started from
        (which a restarted worker reads). A resume or a rollback reads the newest.
    log_interval : worker steps between metric records (recon error, free-energy gap).
    seed : seeds the model's initial weights and every worker's generators (per stage, worker
        and step: ``cluster.worker.step_seed``) and data order.
    run_dir : the run folder (config, metrics, TensorBoard events, checkpoints): a path or a URI
        such as ``s3://bucket/runs/x``.
    device : ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available) for workers' compute.
    placement_timeout_s : how long the run waits for an actor it cannot go on without when Ray
        cannot place it (a lost node's resources are missing): a parameter-server shard, in the
        synchronous mode any worker, in the asynchronous mode the last worker. Past this the
        run fails with one line naming what is missing (``cluster.liveness``). Asynchronous
        training goes on meanwhile with the workers it has.
    prepare_frames : training frames the driver fits a stage's data-fitted parts on (whitening,
        initial units) before the stage's actors start (``RBMStack.prepare``); stages that fit
        nothing (local) ignore it.
    read_cache_mb : per worker, memory for what the trained stage reads from each frame (the
        frozen stages below it, run once per frame instead of once per epoch:
        :class:`models.read_cache.ReadCache`); frames past it are computed each time. 0 = off.
        Stage 0 reads the frames themselves and is not cached. Changes results by float
        rounding (the cached encoding is whitened by a convolution, an uncached window by a
        product), so a resumed run keeps it.
    frame_cache_mb : per worker, memory for the decoded frames of its dataset shards
        (:class:`pipeline.reader.ShardFrames`): each shard is decoded from Parquet once, not
        once an epoch; shards past it are read each time. 0 = off.
    """

    mode: Literal["async", "sync"] = "async"
    n_workers: int = 2
    n_ps_shards: int = 2
    stages: int = 1
    steps: int = 300
    n_fetch: int | tuple[int, ...] = 1
    n_push: int | tuple[int, ...] = 1
    push: Literal["gradient", "delta", "average"] = "gradient"
    transfer_dtype: Literal["float32", "bfloat16"] = "float32"
    prefetch: bool = False
    warm_start_steps: int = 0
    max_in_flight: int = 2
    sync_transport: Literal["tasks", "compiled"] = "tasks"
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_interval: int = 10
    seed: int = 0
    run_dir: str = "runs/demo/train"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    placement_timeout_s: float = 300.0
    prepare_frames: int = 1000
    read_cache_mb: float = 2048.0
    frame_cache_mb: float = 256.0

    def __post_init__(self) -> None:
        for name in ("n_workers", "n_ps_shards", "steps", "max_in_flight", "log_interval",
                     "prepare_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in PER_STAGE:
            value = getattr(self, name)
            if not _as_tuple(value) or min(_as_tuple(value)) < 1:
                shown = list(value) if isinstance(value, tuple) else value
                raise ValueError(f"{name}={shown}: give one period >= 1, or one per stage")
        if self.sync_transport == "compiled" and self.max_in_flight > 9:
            raise ValueError(f"max_in_flight={self.max_in_flight}: at most 9 with "
                             f'sync_transport="compiled" (a graph holds 10 steps at once)')
        if not self.run_dir.strip():
            raise ValueError("run_dir is empty: give the run folder (--train.run_dir=DIR)")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed}: must be from 0 to 2**32 - 1")
        if not self.placement_timeout_s > 0:
            raise ValueError(f"placement_timeout_s={self.placement_timeout_s} must be > 0")
        for name in ("stages", "warm_start_steps", "checkpoint_every", "keep_checkpoints",
                     "read_cache_mb",
                     "frame_cache_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")

    def per_stage_lengths(self) -> set[int]:
        """The lengths of the fields given per stage (empty when every field is one value)."""
        return {len(v) for v in (getattr(self, n) for n in PER_STAGE) if isinstance(v, tuple)}

    def for_stage(self, stage: int) -> TrainConfig:
        """This schedule for stage ``stage``: each per-stage list replaced by its entry."""
        picked = {}
        for name in PER_STAGE:
            value = getattr(self, name)
            if isinstance(value, tuple):
                if stage >= len(value):
                    raise ValueError(f"train.{name}={list(value)} has no period for stage "
                                     f"{stage}: give one per stage")
                picked[name] = value[stage]
        return replace(self, **picked) if picked else self


PER_STAGE = ("n_fetch", "n_push")
"""The :class:`TrainConfig` fields that may be given per stage."""


def _as_tuple(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class SimConfig:
    """Local-simulation settings: Ray resources and injected faults.

    Attributes
    ----------
    num_cpus : CPUs given to ``ray.init`` when the job starts Ray itself (0 = all cores): a
        whole number, as Ray counts them.
    worker_cpus : Ray CPU share per worker actor (0 = auto: 0.5 * num_cpus / n_workers, so
        Ray's own tasks and the parameter servers are never starved). PS shards take 0.01 CPU.
    kill_worker, kill_worker_at_step : ``ray.kill`` worker ``kill_worker`` once the global step
        reaches ``kill_worker_at_step`` (-1 = never); Ray restarts it (``max_restarts``).
    kill_shard, kill_shard_at_step : the same for a parameter-server shard; it is restored from
        the last checkpoint.
    slow_worker, slow_worker_delay_s : worker ``slow_worker`` sleeps this long every step.
    """

    num_cpus: float = 0.0
    worker_cpus: float = 0.0
    kill_worker: int = -1
    kill_worker_at_step: int = -1
    kill_shard: int = -1
    kill_shard_at_step: int = -1
    slow_worker: int = -1
    slow_worker_delay_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_cpus", "worker_cpus", "slow_worker_delay_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not float(self.num_cpus).is_integer():  # ray.init counts whole CPUs
            raise ValueError(f"num_cpus={self.num_cpus}: give a whole number of CPUs (0 = every "
                             "core); a fraction was cut to a whole one, 0.5 to every core")
        for name in ("kill_worker", "kill_worker_at_step", "kill_shard", "kill_shard_at_step",
                     "slow_worker"):
            if getattr(self, name) < -1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0, or -1 for none")


class JobSections(Protocol):
    """What the distributed trainer reads from a job config (``jobs.config.JobConfig``)."""

    data: DataConfig
    model: StackConfig
    update: UpdateConfig
    train: TrainConfig
    sim: SimConfig

    @property
    def n_stages(self) -> int: ...

    def for_stage(self, stage: int) -> JobSections: ...
