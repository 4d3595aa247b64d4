"""The trainer: greedy layer-wise training of the stack with parameter-server shards on Ray.

For each stage k of the stack (Hinton et al. 2006 greedy layer-wise training; Le et al. 2012's
three stages), the trainer creates the stage's parameter-server shards (:mod:`cluster.ps`) and
worker replicas (:mod:`cluster.worker`), runs either schedule, checkpoints, and finally gathers
the stage's parameters into ``model.pt`` so stage k+1's workers compute its input with
``RBMStack.stage_input``.

The schedules live in :mod:`cluster.drivers` (synchronous, reproducible; asynchronous Downpour
SGD); a driver receives the stage's actors, the checkpoint schedule and writer and the fault
injector (:mod:`cluster.fault_injection`) in a :class:`~cluster.drivers.StageContext`.

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

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray
import torch
from tqdm import tqdm

from cluster.checkpoint import CheckpointError, latest_checkpoint, read_meta
from cluster.config import JobSections
from cluster.corpus_pass import CorpusTops, score_corpus
from cluster.drivers import (
    AsyncDriver,
    CheckpointSchedule,
    StageCheckpointer,
    StageContext,
    SyncDriver,
    make_driver,
)
from cluster.failures import Diverged, TrainingFailed, diverged_cause, diverged_message
from cluster.fault_injection import NO_FAULTS, FaultInjector, NoFaults, fault_injector
from cluster.liveness import Liveness, RayProbe, StageWatch, shard_name, worker_name
from cluster.ps import SHARD_CPUS
from cluster.run_lock import RunLock
from cluster.runlog import RunLogger, refuse_existing_run, stage_progress
from cluster.sharding import ShardLayout, to_numpy
from cluster.stage import StageActors, get_from_shards, prepare_stage, start_stage
from cluster.state_io import read_state, write_state
from cluster.worker import split_holdout
from models.kernels.arithmetic import describe, fingerprint, processes_line
from models.stack import RBMStack
from models.state_file import holding
from pipeline import storage
from pipeline.reader import read_frames, shards_for_worker

ARITHMETIC_WAIT_S = 10.0
"""How long the stage's start waits for its actors to say their arithmetic (they have just
answered a ping: a longer wait means one is lost, which the schedule deals with)."""


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


def resumed_stages(model_path: str, stack: RBMStack,
                   generator: torch.Generator | None = None) -> int:
    """Load a resumed run's ``model.pt`` into ``stack`` (and its ``generator_state`` into
    ``generator``, the stack's: where the next stage's preparation draws from); how many
    stages it holds trained (``stages_trained``, 0 to all). A file that is not the run's
    (another geometry, missing or wrong fields) is a :class:`CheckpointError`, before anything
    is trained. A file written before ``generator_state`` leaves ``generator`` as it is."""
    saved = read_state(model_path)
    if generator is not None:
        restore_generator(generator, saved, "generator_state", model_path)
    try:
        holding(saved, ("state", "stages_trained"), model_path)
        stack.load_state_dict(saved["state"])
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise CheckpointError(f"{model_path} cannot be resumed: {exc}") from None
    first = saved["stages_trained"]
    if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= stack.n_layers:
        raise CheckpointError(f"{model_path}: stages_trained is {first!r:.40}, not a number of "
                              f"stages from 0 to {stack.n_layers}")
    return first


@contextlib.contextmanager
def dropped_results_unlogged() -> Iterator[None]:
    """Ray logs each result freed unread that holds an error as an "Unhandled error"
    traceback. Training drops results by design: the steps in flight when an actor fails, whose
    tasks fail on the lost actor or on its outputs; the rollback or replay recomputes them and
    the run's events name the failure. Every result training keeps, it reads. So while it
    trains, and after it fails (its results in flight are freed as the process ends), these are
    not logged (``RAY_IGNORE_UNHANDLED_ERRORS``, which Ray reads at each one); a value the user
    set is kept."""
    key = "RAY_IGNORE_UNHANDLED_ERRORS"
    if key in os.environ:
        yield
        return
    os.environ[key] = "1"
    yield  # not restored after an exception: see above
    os.environ.pop(key, None)


def _resumed_line(first: int, n_stages: int) -> str:
    """What a resume found in ``model.pt``: ``first`` of ``n_stages`` stages trained."""
    if first >= n_stages:
        return (f"stages 0..{first - 1} already trained, every stage this job trains: nothing "
                "to train; the run and its config.toml stay as they are (to train with other "
                "settings, start a new --run-dir)")
    return f"stages 0..{first - 1} already trained" if first else "no stage trained yet"


def restore_generator(generator: torch.Generator, saved: Any, field: str,
                      model_path: str) -> None:
    """Set ``generator`` to the state ``saved[field]`` (``saved``: a ``model.pt``'s fields; a
    file without the field leaves ``generator`` as it is); :class:`CheckpointError` when it is
    not a generator's state."""
    state = saved.get(field) if isinstance(saved, dict) else None
    if state is None:
        return
    try:
        generator.set_state(state)
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{model_path}: {field} is not a generator's state "
                              f"({str(exc)[:80]})") from None


class Trainer:
    """Runs a job config on Ray. ``train()`` returns a summary dict.

    Parameters
    ----------
    config : the job config's sections (``data``, ``model``, ``update``, ``train``, ``sim``).
    config_text : the resolved config as TOML (written to the run folder and every checkpoint).
    resume : continue from the run folder's last checkpoint.
    echo : where event lines go (``tqdm.write`` by default: printed above a progress bar).
    top_frames : ``(k, max_units)``: before the top stage's workers stop, they rank the
        dataset's frames for every unit of its layers of at most ``max_units`` units and keep
        the top ``k`` (:mod:`cluster.corpus_pass`), in :attr:`corpus_tops` after
        :meth:`train`; None (default): no such pass.

    After :meth:`train`, :attr:`model_sha256` is the SHA-256 (hex) of the ``model.pt`` it last
    wrote (what ``RUN/corpus_tops.json`` names), None when it wrote none.
    """

    def __init__(self, config: JobSections, config_text: str, *, resume: bool = False,
                 echo: Callable[[str], None] | None = tqdm.write,
                 top_frames: tuple[int, int] | None = None) -> None:
        self.config = config
        self.config_text = config_text
        self.resume = resume
        self.run_dir = str(config.train.run_dir)
        self.echo = echo
        self.top_frames = top_frames
        self.corpus_tops: CorpusTops | None = None
        self.model_sha256: str | None = None
        self.log: RunLogger | None = None
        self.faults: FaultInjector | NoFaults = NO_FAULTS
        self.generator = torch.Generator().manual_seed(config.train.seed)  # the stack's

    # ------------------------------------------------------------------ top level
    def train(self) -> dict:
        """Train ``train.stages`` stages greedily; returns a summary (per-stage figures)."""
        cfg = self.config
        check_data(cfg)
        init_ray(cfg.sim.num_cpus)
        storage.makedirs(self.run_dir)
        lock = RunLock(self.run_dir)  # FileExistsError: another training writes into it
        try:
            # under the lock, so no run can start between the check and the writes
            # (catneuron train checks once more before Ray starts)
            refuse_existing_run(self.run_dir, self.resume)
            with dropped_results_unlogged():
                return self._train_locked()
        finally:
            lock.release()

    def _train_locked(self) -> dict:
        """:meth:`train` once the run folder is this process's."""
        cfg = self.config
        stack = RBMStack(cfg.model, update=cfg.update, generator=self.generator, device="cpu")
        model_path = storage.join(self.run_dir, "model.pt")
        resumed = self.resume and storage.exists(model_path)
        first = resumed_stages(model_path, stack, self.generator) if resumed else 0
        if first < cfg.n_stages:  # a finished run keeps the config.toml it was trained with
            storage.write_text(storage.join(self.run_dir, "config.toml"), self.config_text)
        # a finished run resumed trains nothing: no new TensorBoard file beside its own
        self.log = RunLogger(self.run_dir, echo=self.echo, tensorboard=first < cfg.n_stages)
        self.faults = fault_injector(cfg.sim, self.log.event)  # each fault once per run
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "stages": []}
        if resumed:
            self.log.event(f"resume: {_resumed_line(first, cfg.n_stages)} ({model_path})")
        try:
            for stage in range(first, cfg.n_stages):
                self._prepare_stage(stage, stack, model_path)
                stats = self._train_stage(stage, stack)
                summary["stages"].append(stats)
                self._write_model(model_path, stack, stage + 1)
                self.log.event(f"stage {stage} done: {stats}")
            summary["model"] = model_path
            for line in self.faults.missed():
                self.log.event(line)
        except TrainingFailed as exc:
            self.log.event(str(exc))  # its results in flight stay unlogged (dropped_results_...)
            self._close_log_after_failure()
            raise
        except BaseException:
            self._close_log_after_failure()
            raise
        self.log.close()
        return summary

    def _close_log_after_failure(self) -> None:
        """Close the run's log while an error is on its way out: a log that cannot be written
        now (the store that failed the run) must not replace that error with its own."""
        try:
            self.log.close()
        except OSError:
            pass

    def _write_model(self, model_path: str, stack: RBMStack, stages_trained: int,
                     generator_state: torch.Tensor | None = None,
                     prepared_state: torch.Tensor | None = None) -> None:
        """``model.pt``: RBMStack.save's format (RBMStack.load(path) reads it) plus the job's
        own fields, among them the state of the stack's generator where the next stage's
        preparation starts from it (``generator_state``; default: its state now), so that a
        run resumed at a stage boundary draws what the uninterrupted run drew; and, written
        once stage ``stages_trained`` is prepared, the state its preparation left
        (``prepared_state``): where a run resumed from that stage's checkpoints continues."""
        state = self.generator.get_state() if generator_state is None else generator_state
        blob = {"config": stack.config.to_dict(), "state": stack.state_dict(),
                "stages_trained": stages_trained, "job_config": self.config_text,
                "generator_state": state}
        if prepared_state is not None:
            blob["prepared_generator_state"] = prepared_state
        self.model_sha256 = hashlib.sha256(write_state(model_path, blob)).hexdigest()

    def _prepare_stage(self, stage: int, stack: RBMStack, model_path: str) -> None:
        """A fresh stage that fits parts to data (whitening, initial units) fits them here on
        ``train.prepare_frames`` training frames; ``model.pt`` then carries them to the
        workers (and to a resumed run). A stage with a checkpoint was prepared before: the
        stack's generator continues from where that preparation left it."""
        stage_dir = storage.join(self.run_dir, "checkpoints", f"stage{stage}")
        if not stack.stages[stage].needs_data:
            return
        if latest_checkpoint(stage_dir) is not None:
            if storage.exists(model_path):
                restore_generator(self.generator, read_state(model_path),
                                  "prepared_generator_state", model_path)
            return
        t0 = time.perf_counter()
        before = self.generator.get_state()  # a resume that prepares it again starts here
        n = prepare_stage(self.config, stack, stage)
        self._write_model(model_path, stack, stage, generator_state=before,
                          prepared_state=self.generator.get_state())
        self.log.event(f"stage {stage}: fitted its whitening and initial units on {n} frames "
                       f"in {time.perf_counter() - t0:.1f} s")

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
            raise CheckpointError(f"checkpoint {ckpt} has {saved} shards, the run's config "
                                  f"{tc.n_ps_shards}: set n_ps_shards = {saved} in its "
                                  f"config.toml")
        if len(meta["positions"]) != tc.n_workers:
            raise CheckpointError(f"checkpoint {ckpt} has {len(meta['positions'])} workers, the "
                                  f"run's config {tc.n_workers}: set n_workers = "
                                  f"{len(meta['positions'])} in its config.toml")
        self.log.event(f"stage {meta['stage']}: resuming from {ckpt} (step {meta['step']}); "
                       f"every shard and worker starts from it")
        return meta

    def _fill_caches(self, stage: int, actors) -> None:
        """Each worker encodes its frames into its stage-input cache before the first step, so
        the workers step at one speed from the start (:meth:`cluster.worker.Worker.fill_cache`;
        a worker lost meanwhile is left to the schedule, which restarts or waits for it)."""
        t0 = time.perf_counter()
        refs = [w.fill_cache.remote() for w in actors.workers]
        ready, _ = ray.wait(refs, num_returns=len(refs),
                            timeout=self.config.train.placement_timeout_s)
        frames = 0
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):
                frames += ray.get(ref)
        self.log.event(f"stage {stage}: the workers encoded {frames} frames into their input "
                       f"caches in {time.perf_counter() - t0:.1f} s")

    def _log_arithmetic(self, stage: int, actors, resumed: dict | None) -> str:
        """Log the arithmetic (:mod:`models.kernels.arithmetic`) of the driver, which fitted
        the stage's whitening and initial units, and of each actor that answers within
        :data:`ARITHMETIC_WAIT_S`: a run repeats bit for bit only where these are the same.
        Returns the distinct ones (what a checkpoint stores); a stage resumed from a checkpoint
        (its meta ``resumed``) that other ones wrote says so."""
        calls = ([(f"shard {j}", s.arithmetic.remote()) for j, s in enumerate(actors.shards)]
                 + [(f"worker {k}", w.arithmetic.remote()) for k, w in enumerate(actors.workers)])
        ready, _ = ray.wait([ref for _, ref in calls], num_returns=len(calls),
                            timeout=ARITHMETIC_WAIT_S)
        named = [("driver", fingerprint())]
        for name, ref in calls:
            if ref in ready:
                with contextlib.suppress(ray.exceptions.RayError):
                    named.append((name, ray.get(ref)))
        self.log.event(f"stage {stage}: arithmetic: {processes_line(named)}")
        kinds = "; ".join(sorted({describe(fp) for _, fp in named}))  # whichever process
        then = (resumed or {}).get("arithmetic")
        if isinstance(then, str) and then and then != kinds:
            self.log.event(f"stage {stage}: its checkpoint was written with another arithmetic "
                           f"({then}): from here the run need not equal an uninterrupted one "
                           "bit for bit")
        return kinds

    def _train_stage(self, stage: int, stack: RBMStack) -> dict:
        """Start the stage's actors, run the schedule, gather the params into ``stack``."""
        cfg = self.config.for_stage(stage)  # the stage's own periods
        tc = cfg.train
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
            if stage > 0 and tc.read_cache_mb > 0:
                self._fill_caches(stage, actors)
            actors.record_pids()
            arithmetic = self._log_arithmetic(stage, actors, meta)
            meta = read_meta(latest_checkpoint(stage_dir))
            sizes = [actors.layout.numel(j) for j in range(tc.n_ps_shards)]
            self.log.event(f"stage {stage}: {tc.n_workers} workers ({cpus} CPU each), "
                           f"{tc.n_ps_shards} shard{'s' * (tc.n_ps_shards != 1)} "
                           f"({sizes} params each), mode {tc.mode}, steps {start}..{tc.steps}")
            t0 = time.perf_counter()
            with stage_progress(stage, tc.steps, start) as bar:
                driver = make_driver(tc.mode, StageContext(
                    actors, meta, tc, CheckpointSchedule(tc.checkpoint_every),
                    StageCheckpointer(actors, self.config_text, self.log,
                                      keep=tc.keep_checkpoints, arithmetic=arithmetic),
                    self.faults,
                    self.log, bar, watch))
                stats = self._run(driver, stage)
            stats["seconds"] = time.perf_counter() - t0
            # gather the stage's parameters into the driver's stack (the next stage's input)
            where = f"stage {stage} step {driver.step}: gathering the parameters"
            parts = get_from_shards(watch, where, lambda: [s.fetch.remote() for s in actors.shards])
            actors.layout.join([p[1] for p in parts], out=rbm.params)
            infos = get_from_shards(watch, where, lambda: [s.info.remote() for s in actors.shards])
            stats.update(stage=stage, updates_applied=[i["n_applied"] for i in infos],
                         updates_rejected=[i["n_rejected"] for i in infos])
            if self.top_frames and stage == stack.n_layers - 1:
                self._score_corpus(stage, actors, rbm, watch)
        finally:
            actors.kill()
        return stats

    def _score_corpus(self, stage: int, actors: StageActors, rbm, watch: StageWatch) -> None:
        """The workers rank the dataset's frames for every unit of the top stage, trained
        (:func:`cluster.corpus_pass.score_corpus`), into :attr:`corpus_tops`; not when a
        worker is lost (its frames would wait for it). The pass is optional: whatever keeps it
        from an answer is one event line, never the run's end."""
        t0 = time.perf_counter()
        k, max_units = self.top_frames
        why = None
        if len(watch.running_workers()) < len(actors.workers):
            why = watch.count()
        else:
            try:
                self.corpus_tops = score_corpus(actors.workers, to_numpy(rbm.params),
                                                self.config.data, stage, k, max_units,
                                                self.config.train.placement_timeout_s)
            except (OSError, ValueError, KeyError, ray.exceptions.RayError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if self.corpus_tops is None:
                    why = (f"a worker did not answer, or every layer is wider than {max_units} "
                           "units")
        if why is not None:
            self.log.event(f"stage {stage}: the workers could not rank the dataset's frames "
                           f"({why}); evaluate and visualize will scan the dataset themselves")
            return
        self.log.event(f"stage {stage}: the workers ranked the dataset's "
                       f"{sum(self.corpus_tops.rows)} frames for each unit in "
                       f"{time.perf_counter() - t0:.1f} s")

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
    def _run(driver: SyncDriver | AsyncDriver, stage: int) -> dict:
        """The driver's schedule; a divergence (NaN/inf parameters, seen by a shard, raised
        through Ray) becomes :class:`Diverged`, one line naming the stage, step and fix."""
        try:
            return driver.run()
        except Exception as exc:
            cause = diverged_cause(exc)
            if cause is None:
                raise
            raise Diverged(diverged_message(stage, driver.step, cause)) from None


__all__ = ["Trainer", "init_ray", "check_data"]
