"""The driver: greedy layer-wise training of the stack with parameter-server shards on Ray.

For each stage k of the stack (Hinton et al. 2006 greedy layer-wise training; Le et al. 2012's
three stages), the driver creates the stage's parameter-server shards (:mod:`cluster.ps`) and
worker replicas (:mod:`cluster.worker`), runs either schedule, checkpoints, and finally gathers
the stage's parameters into ``model.pt`` so stage k+1's workers compute its input with
``RBMStack.stage_input``.

Synchronous schedule (reproducible): step t = every worker computes an update on its next batch
against the parameters of step t-1; each shard averages its parts in worker order and applies
them once (``apply_sync``), returning its new slices, which are the arguments of step t+1. The
driver passes only ObjectRefs (nothing is copied through it) and keeps at most
``max_in_flight`` steps outstanding. Any actor failure rolls every shard and worker back to the
last checkpoint, so a sync run with faults equals one without; before the rollback every actor
must answer again (:mod:`cluster.liveness` logs what a missing one waits for, and the run fails
with one line past ``train.placement_timeout_s``).

Asynchronous schedule (Downpour SGD, Dean et al. 2012): each worker runs chunks of
``log_interval`` steps (rounded up to whole push periods) on its own (fetch every ``n_fetch``,
push every ``n_push``); the driver
takes chunk results in completion order (``ray.wait``), so a slow worker never holds up the
others. A dead worker is restarted by Ray (``max_restarts``) and replays its chunk from its last
reported data position with the same push sequence numbers (what already landed is rejected,
so no update is applied twice). A dead shard is restarted by Ray and restores its last checkpoint.
When a lost node's resources are missing, Ray cannot place an actor again: the driver goes on
with the workers that run, says what the others wait for, takes them back when they answer, and
fails the run with one line when a shard (or every worker) stays unplaced past
``train.placement_timeout_s`` (:mod:`cluster.liveness`).

A progress bar per stage (steps/s and the latest reconstruction error) shows on a terminal.

Run folder layout (a local path or a URI such as ``s3://bucket/runs/x``: every node writes
and reads it through :mod:`pipeline.storage`, so a cluster needs no shared disk)::

    RUN/config.toml            resolved config
    RUN/metrics.jsonl          metrics, one record per line   RUN/tensorboard/  event files
    RUN/events.log             faults, restarts, restores, checkpoints
    RUN/checkpoints/stage{k}/...   see :mod:`cluster.checkpoint`
    RUN/model.pt               RBMStack.save format + {"stages_trained": n, "job_config": toml}
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
from tqdm import tqdm

from cluster.checkpoint import latest_checkpoint, read_meta, step_folder, write_meta
from cluster.config import JobSections
from cluster.failures import Diverged, TrainingFailed, diverged_cause, diverged_message
from cluster.liveness import Liveness, RayProbe, StageWatch, shard_name, worker_name
from cluster.ps import SHARD_CPUS, OutOfStep
from cluster.runlog import RunLogger, show_recon_error, stage_progress
from cluster.sharding import ShardLayout
from cluster.stage import StageActors, get_when_alive, prepare_stage, start_stage
from cluster.state_io import read_state, write_state
from cluster.worker import split_holdout
from models.stack import RBMStack
from pipeline import storage
from pipeline.reader import read_frames, shards_for_worker

POLL_S = 0.5  # seconds between the drivers' liveness polls while they wait


def init_ray(num_cpus: float = 0.0) -> None:
    """Start a local Ray (the local simulation) unless one is running or ``RAY_ADDRESS`` names
    a cluster. ``num_cpus`` = 0 gives Ray every core."""
    from pipeline.pool import ensure_ray

    ensure_ray(int(num_cpus) or None)


def worker_cpu_share(config: JobSections) -> float:
    """Ray CPUs per worker actor: ``sim.worker_cpus`` or half the cluster's CPUs split evenly
    (so Ray's own tasks and the shards are not starved on a 2-core laptop), at most 1."""
    if config.sim.worker_cpus:
        return float(config.sim.worker_cpus)
    total = ray.cluster_resources().get("CPU", 1.0)
    return round(min(1.0, 0.5 * total / config.train.n_workers), 4)


def check_data(config: JobSections) -> tuple[list[str], list[str]]:
    """Fail before any actor starts if the dataset cannot feed this job (missing folder, too
    few shards for the workers, frame size different from ``model.input_size``)."""
    train_shards, holdout = split_holdout(config.data.path, config.data.holdout_frames)
    n = config.train.n_workers
    for k in range(n):
        if not shards_for_worker(train_shards, k, n):
            raise ValueError(
                f"train.n_workers={n} but the dataset {config.data.path} has only "
                f"{len(train_shards)} training shard(s) (each worker reads its own shards): use "
                f"--train.n_workers={len(train_shards)} or re-ingest with smaller shards")
    frames = read_frames(config.data.path, shards=train_shards[:1], limit=1)
    _, c, h, w = frames.shape  # (1, C, H, W)
    m = config.model
    if (c, h, w) != (m.channels, m.input_size, m.input_size):
        raise ValueError(
            f"model.input_size={m.input_size}, model.channels={m.channels} but the dataset's "
            f"frames are {c}x{h}x{w} (CxHxW): set --model.input_size={h} --model.channels={c} "
            f"or re-ingest at that size")
    return train_shards, holdout


def is_actor_failure(exc: BaseException) -> bool:
    """An actor died or lost its state, seen directly or through a task that depended on it
    (Ray raises the task's error as an instance of its cause's type as well)."""
    causes = (ray.exceptions.RayActorError, OutOfStep)
    return isinstance(exc, causes) or isinstance(getattr(exc, "cause", None), causes)


class Trainer:
    """Runs a job config on Ray. ``train()`` returns a summary dict.

    Parameters
    ----------
    config : the job config's sections (``data``, ``model``, ``update``, ``train``, ``sim``).
    config_text : the resolved config as TOML (written to the run folder and every checkpoint).
    resume : continue from the run folder's last checkpoint.
    echo : where event lines go (``tqdm.write`` by default: printed above a progress bar).
    """

    def __init__(self, config: JobSections, config_text: str, *, resume: bool = False,
                 echo: Callable[[str], None] | None = tqdm.write) -> None:
        self.config = config
        self.config_text = config_text
        self.resume = resume
        self.run_dir = str(config.train.run_dir)
        self.echo = echo
        self.log: RunLogger | None = None
        self._killed: set[str] = set()

    # ------------------------------------------------------------------ top level
    def train(self) -> dict:
        """Train ``train.stages`` stages greedily; returns a summary (per-stage figures)."""
        cfg = self.config
        check_data(cfg)
        if not self.resume and self._holds_a_run():
            raise FileExistsError(f"{self.run_dir} already holds a run: pass --resume to "
                                  f"continue it, or choose a new --run-dir")
        init_ray(cfg.sim.num_cpus)
        storage.makedirs(self.run_dir)
        storage.write_text(storage.join(self.run_dir, "config.toml"), self.config_text)
        self.log = RunLogger(self.run_dir, echo=self.echo)
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "stages": []}
        try:
            stack = RBMStack(cfg.model, update=cfg.update,
                             generator=torch.Generator().manual_seed(cfg.train.seed),
                             device="cpu")
            first = 0
            model_path = storage.join(self.run_dir, "model.pt")
            if self.resume and storage.exists(model_path):
                saved = read_state(model_path)
                stack.load_state_dict(saved["state"])
                first = int(saved["stages_trained"])
                self.log.event(f"resume: stages 0..{first - 1} already trained ({model_path})")
            for stage in range(first, cfg.n_stages):
                self._prepare_stage(stage, stack, model_path)
                stats = self._train_stage(stage, stack)
                summary["stages"].append(stats)
                self._write_model(model_path, stack, stage + 1)
                self.log.event(f"stage {stage} done: {stats}")
            summary["model"] = model_path
        except TrainingFailed as exc:
            self.log.event(str(exc))
            # the same failure sits in other results still in flight; Ray would print each one
            # as an "unhandled error" when they are dropped: the one line above says it all
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
            raise
        finally:
            self.log.close()
        return summary

    def _write_model(self, model_path: str, stack: RBMStack, stages_trained: int) -> None:
        """``model.pt``: RBMStack.save's format (RBMStack.load(path) reads it) plus the job's
        own fields."""
        write_state(model_path, {"config": stack.config.to_dict(), "state": stack.state_dict(),
                                 "stages_trained": stages_trained,
                                 "job_config": self.config_text})

    def _prepare_stage(self, stage: int, stack: RBMStack, model_path: str) -> None:
        """A fresh stage that fits parts to data (whitening, initial units) fits them here on
        ``train.prepare_frames`` training frames; ``model.pt`` then carries them to the
        workers (and to a resumed run). A stage with a checkpoint was prepared before."""
        stage_dir = storage.join(self.run_dir, "checkpoints", f"stage{stage}")
        if not stack.stages[stage].needs_data or latest_checkpoint(stage_dir) is not None:
            return
        t0 = time.perf_counter()
        n = prepare_stage(self.config, stack, stage)
        self._write_model(model_path, stack, stage)
        self.log.event(f"stage {stage}: fitted its whitening and initial units on {n} frames "
                       f"in {time.perf_counter() - t0:.1f} s")

    def _holds_a_run(self) -> bool:
        """Whether the run folder already has a model or a stage checkpoint."""
        checkpoints = storage.join(self.run_dir, "checkpoints")
        return storage.exists(storage.join(self.run_dir, "model.pt")) or any(
            storage.exists(storage.join(checkpoints, f"stage{k}", "LATEST"))
            for k in range(self.config.n_stages))

    # ------------------------------------------------------------------ one stage
    def _start_checkpoint(self, stage_dir: str) -> dict | None:
        """The checkpoint a resumed stage continues from (None: a fresh stage), checked
        against this job's shards and workers."""
        tc = self.config.train
        ckpt = latest_checkpoint(stage_dir)
        if ckpt is None:
            return None
        if not self.resume:
            raise FileExistsError(f"{stage_dir} already holds checkpoints: pass --resume to "
                                  f"continue that run, or choose a new --run-dir")
        meta = read_meta(ckpt)
        saved = ShardLayout.from_dict(meta["layout"]).n_ps_shards
        if saved != tc.n_ps_shards:
            raise ValueError(f"checkpoint {ckpt} has {saved} shards; resume with "
                             f"--train.n_ps_shards={saved}")
        if len(meta["positions"]) != tc.n_workers:
            raise ValueError(f"checkpoint {ckpt} has {len(meta['positions'])} workers; resume "
                             f"with --train.n_workers={len(meta['positions'])}")
        self.log.event(f"stage {meta['stage']}: resuming from {ckpt} (step {meta['step']}); "
                       f"every shard and worker starts from it")
        return meta

    def _train_stage(self, stage: int, stack: RBMStack) -> dict:
        """Start the stage's actors, run the schedule, gather the params into ``stack``."""
        cfg, tc = self.config, self.config.train
        rbm = stack.rbms[stage]
        model_path = storage.join(self.run_dir, "model.pt")
        stage_dir = storage.join(self.run_dir, "checkpoints", f"stage{stage}")
        storage.makedirs(stage_dir)
        meta = self._start_checkpoint(stage_dir)
        start = int(meta["step"]) if meta else 0
        cpus = worker_cpu_share(cfg)
        actors = start_stage(cfg, stage, rbm, stage_dir, config_text=self.config_text,
                             worker_cpus=cpus, wait=False,
                             stack_path=model_path if storage.exists(model_path) else None)
        try:
            watch = self._watch(actors, cpus)
            watch.await_start(f"stage {stage}: starting its actors")
            actors.record_pids()
            meta = read_meta(latest_checkpoint(stage_dir))
            sizes = [actors.layout.numel(j) for j in range(tc.n_ps_shards)]
            self.log.event(f"stage {stage}: {tc.n_workers} workers ({cpus} CPU each), "
                           f"{tc.n_ps_shards} shard{'s' * (tc.n_ps_shards != 1)} "
                           f"({sizes} params each), mode {tc.mode}, steps {start}..{tc.steps}")
            t0 = time.perf_counter()
            with stage_progress(stage, tc.steps, start) as bar:
                driver_class = _SyncDriver if tc.mode == "sync" else _AsyncDriver
                driver = driver_class(self, actors, meta, bar, watch)
                stats = self._run(driver, stage)
            stats["seconds"] = time.perf_counter() - t0
            # gather the stage's parameters into the driver's stack (the next stage's input)
            watch.await_running(f"stage {stage} step {driver.step}: gathering the parameters",
                                watch.shards)
            parts = get_when_alive(lambda: [s.fetch.remote() for s in actors.shards])
            actors.layout.join([p[1] for p in parts], out=rbm.params)
            infos = get_when_alive(lambda: [s.info.remote() for s in actors.shards])
            stats.update(stage=stage, updates_applied=[i["n_applied"] for i in infos],
                         updates_rejected=[i["n_rejected"] for i in infos])
        finally:
            actors.kill()
        return stats

    def _watch(self, actors: StageActors, worker_cpus: float) -> StageWatch:
        """The stage's actors under :mod:`cluster.liveness` (shards probed all the time)."""
        tc = self.config.train
        live = Liveness(RayProbe())
        for j, shard in enumerate(actors.shards):
            live.add(shard_name(j), shard, {"CPU": SHARD_CPUS}, watched=True)
        for k, worker in enumerate(actors.workers):
            live.add(worker_name(k), worker, {"CPU": worker_cpus})
        return StageWatch(live, tc.n_workers, tc.n_ps_shards, tc.placement_timeout_s,
                          every_worker=tc.mode == "sync", log=self.log.event)

    @staticmethod
    def _run(driver: _SyncDriver | _AsyncDriver, stage: int) -> dict:
        """The driver's schedule; a divergence (NaN/inf parameters, seen by a shard, raised
        through Ray) becomes :class:`Diverged`, one line naming the stage, step and fix."""
        try:
            return driver.run()
        except Exception as exc:
            cause = diverged_cause(exc)
            if cause is None:
                raise
            raise Diverged(diverged_message(stage, driver.step, cause)) from None

    # ------------------------------------------------------------------ shared by the drivers
    def checkpoint(self, actors: StageActors, step: int, *, positions, seqs, wsteps,
                   local_states=None) -> dict:
        """Every shard writes its own file, then meta.pt, then LATEST is switched (atomic)."""
        folder = step_folder(actors.stage_dir, step)
        storage.makedirs(folder)
        get_when_alive(lambda: [s.save.remote(storage.join(folder, f"shard{j}.pt"))
                                for j, s in enumerate(actors.shards)])
        meta = write_meta(folder, stage=actors.stage, step=step, config_text=self.config_text,
                          layout=actors.layout, positions=positions, seqs=seqs,
                          worker_steps=wsteps, local_states=local_states)
        self.log.event(f"stage {actors.stage}: checkpoint {folder}")
        self.log.sync()
        return meta

    def due(self, before: int, after: int) -> bool:
        """Whether a checkpoint boundary lies in (before, after]."""
        every = self.config.train.checkpoint_every
        return bool(every) and after // every > before // every

    def inject_faults(self, actors: StageActors, step: int) -> None:
        """Simulation: kill a worker / a shard once the global step reaches the configured
        step (once per run)."""
        sim = self.config.sim
        faults = (
            ("worker", sim.kill_worker, sim.kill_worker_at_step, actors.workers,
             "Ray restarts it"),
            ("shard", sim.kill_shard, sim.kill_shard_at_step, actors.shards,
             "Ray restarts it from the last checkpoint"),
        )
        for kind, index, at_step, handles, how in faults:
            if kind in self._killed or index < 0 or not 0 <= at_step <= step:
                continue
            self._killed.add(kind)
            ray.kill(handles[index], no_restart=False)
            self.log.event(f"stage {actors.stage} step {step}: injected fault: killed {kind} "
                           f"{index} ({how})")


class _SyncDriver:
    """Fixed-order synchronous steps, pipelined through ObjectRefs; rollback on failure (after
    every actor answers again: ``watch`` says what the steps wait for)."""

    def __init__(self, trainer: Trainer, actors: StageActors, meta: Mapping, bar: tqdm,
                 watch: StageWatch) -> None:
        self.trainer, self.actors, self.bar, self.watch = trainer, actors, bar, watch
        self.tc = trainer.config.train
        self.log = trainer.log
        self.last_checkpoint = meta
        self.step = int(meta["step"])
        self.window: collections.deque = collections.deque()  # (step, metric refs, param refs)
        self.last: dict = {}

    def run(self) -> dict:
        rollbacks = 0
        while True:
            try:
                self._steps()
                break
            except Exception as exc:
                if not is_actor_failure(exc) or rollbacks >= 10:
                    raise
                rollbacks += 1
                self.window.clear()
                self._rollback()
        return {"mode": "sync", "steps": self.step, "rollbacks": rollbacks, **self.last}

    def _steps(self) -> None:
        """Every worker computes step t against step t-1's parameters; each shard applies the
        mean of its parts; at most ``max_in_flight`` steps outstanding."""
        tc, actors = self.tc, self.actors
        n_ps_shards = tc.n_ps_shards
        param_refs = [s.params_now.remote() for s in actors.shards]
        while self.step < tc.steps:
            step = self.step
            self.trainer.inject_faults(actors, step)
            outs = [w.compute.options(num_returns=n_ps_shards + 1).remote(step, *param_refs)
                    for w in actors.workers]
            param_refs = [actors.shards[j].apply_sync.remote(step, *[o[j] for o in outs])
                          for j in range(n_ps_shards)]
            self.window.append((step, [o[n_ps_shards] for o in outs], param_refs))
            self._drain(tc.max_in_flight)
            self.step += 1
            if self.trainer.due(step, self.step) or self.step == tc.steps:
                self._drain(0)
                self._checkpoint()
        self._drain(0)

    def _drain(self, keep: int) -> None:
        """Wait for the oldest steps until ``keep`` are outstanding; log their metrics."""
        while len(self.window) > keep:
            t, metric_refs, refs = self.window.popleft()
            records = ray.get(metric_refs)
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
            self.bar.update(1)
            if records and t % self.tc.log_interval == 0:
                stage = self.actors.stage
                for r in records:
                    self.log.metrics({"stage": stage, "step": t + 1, **r})
                self.last = merge_records(records)
                self.log.metrics({"stage": stage, "step": t + 1, "updates_applied": t + 1,
                                  **self.last})
                show_recon_error(self.bar, self.last)

    def _checkpoint(self) -> None:
        workers, step = self.actors.workers, self.step
        positions = ray.get([w.position.remote() for w in workers])
        states = ray.get([w.local_state.remote() for w in workers])
        self.last_checkpoint = self.trainer.checkpoint(
            self.actors, step, positions=positions, seqs=[step] * len(workers),
            wsteps=[step] * len(workers), local_states=states)

    def _rollback(self) -> None:
        """Wait for restarted actors, restore every shard and worker to the last checkpoint."""
        meta, actors = self.last_checkpoint, self.actors
        folder = step_folder(actors.stage_dir, meta["step"])
        self.watch.await_running(f"stage {actors.stage} step {self.step}: synchronous steps "
                                 f"wait for every worker and shard")
        ray.get([s.load.remote(storage.join(folder, f"shard{j}.pt"))
                 for j, s in enumerate(actors.shards)])
        ray.get([w.restore.remote(tuple(meta["positions"][k]), meta["local_states"][k],
                                  int(meta["step"])) for k, w in enumerate(actors.workers)])
        self.log.event(f"stage {actors.stage}: actor failure; every shard and worker restored "
                       f"from {folder} (step {meta['step']}); the lost steps are recomputed")
        self.bar.update(int(meta["step"]) - self.step)
        self.step = int(meta["step"])


@dataclass
class Replica:
    """The driver's record of one async worker: where its next chunk starts."""

    actor: Any
    position: tuple[int, int]
    seq: int  # the next push's sequence number
    steps: int  # worker steps done (its generator's step counter)
    local_state: Mapping | None  # q, chain (and optimiser) as of its last chunk with state


@dataclass
class _Chunks:
    """Chunks in flight: ObjectRef -> (worker, steps)."""

    refs: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return sum(n for _, n in self.refs.values())


class _AsyncDriver:
    """Downpour: chunks of whole push periods per worker, taken in completion order; goes on
    with the workers that run (``watch``) and takes a worker back when it answers again."""

    def __init__(self, trainer: Trainer, actors: StageActors, meta: Mapping, bar: tqdm,
                 watch: StageWatch) -> None:
        self.trainer, self.actors, self.bar, self.watch = trainer, actors, bar, watch
        self.tc = tc = trainer.config.train
        self.log = trainer.log
        self.replicas = [Replica(w, tuple(meta["positions"][k]), meta["seqs"][k],
                                 meta["worker_steps"][k], meta["local_states"][k])
                         for k, w in enumerate(actors.workers)]
        self.step = int(meta["step"])
        self.last_checkpoint_step = self.step
        self.chunk = -(-tc.log_interval // tc.n_push) * tc.n_push  # a chunk ends with a push
        self.chunks = _Chunks()
        self.restarts = 0
        self.last: dict = {}

    @property
    def where(self) -> str:
        return f"stage {self.actors.stage} step {self.step}"

    def run(self) -> dict:
        if self.step < self.tc.warm_start_steps and len(self.replicas) > 1:
            self.log.event(f"stage {self.actors.stage}: warm start: worker 0 alone for "
                           f"{self.tc.warm_start_steps} steps")
        self._feed()
        while self.tc.steps - self.step - self.chunks.steps > 0 or self.chunks.refs:
            ready = []
            if self.chunks.refs:
                ready, _ = ray.wait(list(self.chunks.refs), num_returns=1, timeout=POLL_S)
            else:  # every worker is down: wait for one (the watch fails the run past its limit)
                time.sleep(POLL_S)
            for ref in ready:
                self._take(ref)
            self.watch.poll(self.where)
            self._feed()
        self.watch.report_unreported(f"{self.where}: every step done")
        self.watch.await_running(f"{self.where}: final checkpoint", self.watch.shards)
        for info in self.actors.restarted_shards():
            self.log.event(f"stage {self.actors.stage}: shard {info['index']} was restored from "
                           f"{info['restored_from']} after a fault (Ray restarted it)")
        if self.last_checkpoint_step != self.step:
            self._checkpoint()
        return {"mode": "async", "steps": self.step, "worker_restarts": self.restarts,
                **self.last}

    def _take(self, ref: ray.ObjectRef) -> None:
        """Account a finished (or lost) chunk; checkpoint when one is due."""
        k, n_steps = self.chunks.refs.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # died, restarting, or a shard was down
            self._lost(k, exc)
            return
        before = self.step
        self.step += n_steps
        self._record(k, n_steps, result)
        self.trainer.inject_faults(self.actors, self.step)
        if self.trainer.due(before, self.step):
            self._checkpoint()

    def _feed(self) -> None:
        """Give every running, idle worker its next chunk (worker 0 alone during the warm
        start, unless it is down)."""
        busy = {k for k, _ in self.chunks.refs.values()}
        alone = self.step < self.tc.warm_start_steps and self.watch.is_running(0)
        for k in self.watch.running_workers():
            if k not in busy and (k == 0 or not alone):
                self._submit(k)

    def _submit(self, k: int) -> None:
        """Worker ``k``'s next chunk, if steps remain; with its state when a checkpoint or the
        end may come before its following chunk."""
        tc, r = self.tc, self.replicas[k]
        n_steps = min(self.chunk, tc.steps - self.step - self.chunks.steps)
        if n_steps <= 0:
            return
        ahead = self.step + (len(self.replicas) + 1) * self.chunk
        with_state = self.trainer.due(self.step, ahead) or ahead >= tc.steps
        ref = r.actor.run.remote(n_steps, r.position, r.seq, r.steps, with_state)
        self.chunks.refs[ref] = (k, n_steps)

    def _lost(self, k: int, exc: BaseException) -> None:
        """Worker ``k``'s chunk is lost: it died (Ray restarts it), or a shard it needs did not
        answer. It replays from its last position once it answers again; the others go on."""
        r = self.replicas[k]
        self.watch.lost_worker(k)
        if isinstance(exc, ray.exceptions.RayTaskError):
            what = f"worker {k}'s chunk failed (a shard did not answer: {type(exc).__name__})"
        else:
            self.restarts += 1
            what = f"worker {k} died ({type(exc).__name__}); Ray restarts it"
        self.log.event(
            f"{self.where}: {what}; it replays from data position {r.position} with push seq "
            f"{r.seq} once it answers (pushes that already landed are rejected, the rest of its "
            f"chunk is lost); {self.watch.count()}")

    def _record(self, k: int, n_steps: int, m: dict) -> None:
        """Account worker ``k``'s finished chunk: its next start, metrics, lost pushes."""
        r, stage = self.replicas[k], self.actors.stage
        r.position, r.seq = tuple(m.pop("position")), m["seq_end"]
        r.local_state = m.pop("local_state", None)
        r.steps += n_steps
        self.log.metrics({"stage": stage, "step": self.step, **m})
        self.last = {key: m[key] for key in ("recon_error", "fe_gap", "staleness_mean")
                     if key in m}
        self.bar.update(n_steps)
        show_recon_error(self.bar, m)
        if m["push_failures"]:
            self.log.event(f"{self.where}: worker {k} lost {m['push_failures']} push(es) to a "
                           f"shard that did not answer (a restarted shard restores the last "
                           f"checkpoint)")

    def _checkpoint(self) -> None:
        self.watch.await_running(f"{self.where}: checkpoint", self.watch.shards)
        rs = self.replicas
        self.trainer.checkpoint(self.actors, self.step, positions=[r.position for r in rs],
                                seqs=[r.seq for r in rs], wsteps=[r.steps for r in rs],
                                local_states=[r.local_state for r in rs])
        self.last_checkpoint_step = self.step


def merge_records(records: list[dict]) -> dict:
    """Mean over workers of the monitored figures; total frames/s."""
    out: dict[str, float] = {}
    for key in ("recon_error", "fe_gap"):
        values = [r[key] for r in records if key in r]
        if values:
            out[key] = float(np.mean(values))
    out["frames_per_s_total"] = float(sum(r.get("frames_per_s", 0.0) for r in records))
    return out


__all__ = ["Trainer", "init_ray", "check_data", "is_actor_failure"]
