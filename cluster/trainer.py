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
last checkpoint, so a sync run with faults equals one without.

Asynchronous schedule (Downpour SGD, Dean et al. 2012): each worker runs chunks of
``log_interval`` steps (rounded up to whole push periods) on its own (fetch every ``n_fetch``,
push every ``n_push``); the driver
takes chunk results in completion order (``ray.wait``), so a slow worker never holds up the
others. A dead worker is restarted by Ray (``max_restarts``) and replays its chunk from its last
reported data position with the same push sequence numbers (what already landed is rejected,
so no update is applied twice). A dead shard is restarted by Ray and restores its last checkpoint.

Run folder layout (a local path or a URI such as ``s3://bucket/runs/x``: every node writes
and reads it through :mod:`pipeline.storage`, so a cluster needs no shared disk)::

    RUN/config.toml            resolved config
    RUN/metrics.jsonl          metrics, one record per line   RUN/tensorboard/  event files
    RUN/events.log             faults, restarts, restores, checkpoints
    RUN/checkpoints/stage{k}/step{t:08d}/{meta.pt, shard{j}.pt}   RUN/checkpoints/stage{k}/LATEST
    RUN/model.pt               RBMStack.save format + {"stages_trained": n, "job_config": toml}
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cluster.metrics import RunLogger
from cluster.ps import OutOfStep, ParameterShard, latest_checkpoint, shard_actor_class
from cluster.sharding import ShardLayout, to_numpy
from cluster.state_io import read_state, write_state
from cluster.worker import split_holdout, worker_actor_class
from models.stack import RBMStack
from pipeline import storage
from pipeline.reader import read_frames, shards_for_worker

SPREAD = "SPREAD"
"""Ray's scheduling strategy for shards and workers: spread over the cluster's nodes (round
robin), so a parameter server's traffic and the replicas' compute use every node's network and
cores, and a dead node takes only its share of the actors with it. One machine: no effect."""


def init_ray(num_cpus: float = 0.0) -> None:
    """Start a local Ray (the local simulation) unless one is running or ``RAY_ADDRESS`` names
    a cluster. ``num_cpus`` = 0 gives Ray every core."""
    from pipeline.pool import ensure_ray

    ensure_ray(int(num_cpus) or None)


def worker_cpu_share(config: Any) -> float:
    """Ray CPUs per worker actor: ``sim.worker_cpus`` or half the cluster's CPUs split evenly
    (so Ray's own tasks and the shards are not starved on a 2-core laptop), at most 1."""
    import ray

    if config.sim.worker_cpus:
        return float(config.sim.worker_cpus)
    total = ray.cluster_resources().get("CPU", 1.0)
    return round(min(1.0, 0.5 * total / config.train.n_workers), 4)


def check_data(config: Any) -> tuple[list[str], list[str]]:
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


class Trainer:
    """Runs a job config on Ray. ``train()`` returns a summary dict.

    Parameters
    ----------
    config : a ``jobs.config.JobConfig`` (sections ``data``, ``model``, ``update``, ``train``,
        ``sim``).
    config_text : the resolved config as TOML (written to the run folder and every checkpoint).
    resume : continue from the run folder's last checkpoint.
    echo : where event lines go (``print`` by default).
    """

    def __init__(self, config: Any, config_text: str, *, resume: bool = False,
                 echo: Callable[[str], None] | None = print) -> None:
        self.config = config
        self.config_text = config_text
        self.resume = resume
        self.run_dir = str(config.train.run_dir)
        self.echo = echo
        self.log: RunLogger | None = None
        self._killed_worker = False
        self._killed_shard = False

    # ------------------------------------------------------------------ top level
    def train(self) -> dict:
        """Train ``train.stages`` stages greedily; returns a summary (per-stage figures)."""
        import ray

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
            holdout_ref = None
            _, holdout_shards = split_holdout(cfg.data.path, cfg.data.holdout_frames)
            if holdout_shards:
                holdout = read_frames(cfg.data.path, shards=holdout_shards,
                                      limit=cfg.data.holdout_frames)
                holdout_ref = ray.put(holdout)  # once; workers get the reference
            for stage in range(first, cfg.n_stages):
                stats = self._train_stage(stage, stack, holdout_ref)
                summary["stages"].append(stats)
                # RBMStack.save's format (RBMStack.load(path) reads it) plus the job's own fields
                write_state(model_path, {"config": stack.config.to_dict(),
                                         "state": stack.state_dict(), "stages_trained": stage + 1,
                                         "job_config": self.config_text})
                self.log.event(f"stage {stage} done: {stats}")
            summary["model"] = model_path
        finally:
            self.log.close()
        return summary

    def _holds_a_run(self) -> bool:
        """Whether the run folder already has a model or a stage checkpoint."""
        checkpoints = storage.join(self.run_dir, "checkpoints")
        return storage.exists(storage.join(self.run_dir, "model.pt")) or any(
            storage.exists(storage.join(checkpoints, f"stage{k}", "LATEST"))
            for k in range(self.config.n_stages))

    # ------------------------------------------------------------------ one stage
    def _train_stage(self, stage: int, stack: RBMStack, holdout_ref) -> dict:
        """Create shards and workers for ``stage``, run the schedule, gather params into
        ``stack``."""
        import ray

        cfg, tc = self.config, self.config.train
        rbm = stack.rbms[stage]
        layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, tc.n_ps_shards)
        stage_dir = storage.join(self.run_dir, "checkpoints", f"stage{stage}")
        storage.makedirs(stage_dir)
        ckpt = latest_checkpoint(stage_dir) if self.resume else None
        if ckpt is None and latest_checkpoint(stage_dir) is not None:
            raise FileExistsError(f"{stage_dir} already holds checkpoints: pass --resume to "
                                  f"continue that run, or choose a new --run-dir")
        meta = read_state(storage.join(ckpt, "meta.pt")) if ckpt else None
        if meta is not None and meta["layout"]["n_shards"] != tc.n_ps_shards:
            raise ValueError(f"checkpoint {ckpt} has {meta['layout']['n_shards']} shards; resume "
                             f"with --train.n_ps_shards={meta['layout']['n_shards']}")
        if meta is not None and len(meta["positions"]) != tc.n_workers:
            raise ValueError(f"checkpoint {ckpt} has {len(meta['positions'])} workers; resume "
                             f"with --train.n_workers={len(meta['positions'])}")
        start = int(meta["step"]) if meta else 0
        if meta:
            self.log.event(f"stage {stage}: resuming from {ckpt} (step {start})")

        shard_cls = shard_actor_class()
        full = to_numpy(rbm.params)
        shards = [
            shard_cls.options(name=None, scheduling_strategy=SPREAD).remote(
                j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names),
                layout.split(full, j), stage_dir,
                deltas=tc.shards_add_deltas)
            for j in range(tc.n_ps_shards)
        ]
        # A (re)started shard restores the latest checkpoint in stage_dir when there is one
        # (resume, or Ray restarting a dead shard); else it starts from the initial params.
        stack_state_ref = ray.put(stack.state_dict()) if stage > 0 else None
        worker_cls = worker_actor_class()
        cpus = worker_cpu_share(cfg)
        workers = []
        for k in range(tc.n_workers):
            slow = cfg.sim.slow_worker_delay_s if cfg.sim.slow_worker == k else 0.0
            workers.append(worker_cls.options(num_cpus=cpus, scheduling_strategy=SPREAD).remote(
                k, tc.n_workers, data=cfg.data, model=cfg.model, update=cfg.update, stage=stage,
                layout=layout.to_dict(), shards=shards if tc.mode == "async" else (),
                stack_state=stack_state_ref, holdout=holdout_ref, seed=tc.seed,
                position=tuple(meta["positions"][k]) if meta else (0, 0),
                local_state=meta["local_states"][k] if meta else None,
                n_fetch=tc.n_fetch, n_push=tc.n_push, max_in_flight=tc.max_in_flight,
                log_interval=tc.log_interval, slow_delay_s=slow, device=tc.device, step=start,
                prefetch=tc.prefetch, push=tc.push, transfer_dtype=tc.transfer_dtype))
        ray.get([w.ping.remote() for w in workers] + [s.info.remote() for s in shards])
        sizes = [layout.numel(j) for j in range(tc.n_ps_shards)]
        self.log.event(f"stage {stage}: {tc.n_workers} workers ({cpus} CPU each), "
                       f"{tc.n_ps_shards} shards ({sizes} params each), mode {tc.mode}, "
                       f"steps {start}..{tc.steps}")
        ctx = _StageContext(stage, stage_dir, layout, shards, workers, meta)
        if meta is None:
            self._checkpoint(ctx, 0, positions=[(0, 0)] * tc.n_workers, seqs=[0] * tc.n_workers,
                             wsteps=[0] * tc.n_workers)
        t0 = time.perf_counter()
        if tc.mode == "sync":
            stats = self._run_sync(ctx, start)
        else:
            stats = self._run_async(ctx, start)
        stats["seconds"] = time.perf_counter() - t0
        # gather the stage's parameters into the driver's stack (the next stage's input)
        parts = _get_when_alive(lambda: [s.fetch.remote() for s in shards])
        layout.join([p[1] for p in parts], out=rbm.params)
        infos = _get_when_alive(lambda: [s.info.remote() for s in shards])
        stats.update(stage=stage, updates_applied=[i["n_applied"] for i in infos],
                     updates_rejected=[i["n_rejected"] for i in infos])
        for a in workers + shards:
            ray.kill(a, no_restart=True)
        return stats

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, ctx: _StageContext, step: int, *, positions, seqs, wsteps,
                    local_states=None) -> str:
        """Every shard writes its own file, then meta.pt, then LATEST is switched (atomic)."""

        folder = storage.join(ctx.stage_dir, f"step{step:08d}")
        storage.makedirs(folder)
        _get_when_alive(lambda: [s.save.remote(storage.join(folder, f"shard{j}.pt"))
                                 for j, s in enumerate(ctx.shards)])
        meta = {"stage": ctx.stage, "step": step, "config": self.config_text,
                "layout": ctx.layout.to_dict(), "positions": [list(p) for p in positions],
                "seqs": list(seqs), "worker_steps": list(wsteps),
                "local_states": local_states or [None] * len(positions), "time": time.time()}
        write_state(storage.join(folder, "meta.pt"), meta)  # numpy arrays stored as tensors
        storage.write_text(storage.join(ctx.stage_dir, "LATEST"), f"step{step:08d}")
        ctx.last_checkpoint = meta
        self.log.event(f"stage {ctx.stage}: checkpoint {folder}")
        self.log.sync()
        return folder

    def _due(self, before: int, after: int) -> bool:
        """Whether a checkpoint boundary lies in (before, after]."""
        every = self.config.train.checkpoint_every
        return bool(every) and after // every > before // every

    # ------------------------------------------------------------------ faults (simulation)
    def _inject_faults(self, ctx: _StageContext, step: int) -> None:
        """Kill a worker / a shard once the global step reaches the configured step."""
        import ray

        sim = self.config.sim
        faults = (
            ("worker", sim.kill_worker, sim.kill_worker_at_step, ctx.workers, "Ray restarts it"),
            ("shard", sim.kill_shard, sim.kill_shard_at_step, ctx.shards,
             "Ray restarts it from the last checkpoint"),
        )
        for kind, index, at_step, actors, how in faults:
            flag = f"_killed_{kind}"
            if getattr(self, flag) or index < 0 or not 0 <= at_step <= step:
                continue
            setattr(self, flag, True)
            ray.kill(actors[index], no_restart=False)
            self.log.event(f"stage {ctx.stage} step {step}: injected fault: killed {kind} "
                           f"{index} ({how})")

    # ------------------------------------------------------------------ sync
    def _run_sync(self, ctx: _StageContext, start: int) -> dict:
        """Fixed-order synchronous steps, pipelined through ObjectRefs; rollback on failure."""
        import ray

        tc = self.config.train
        n_shards = tc.n_ps_shards
        step = start
        window: collections.deque = collections.deque()
        param_refs = [s.params_now.remote() for s in ctx.shards]
        rollbacks = 0
        last: dict = {}

        def drain(keep: int) -> None:
            nonlocal last
            while len(window) > keep:
                t, metric_refs, refs = window.popleft()
                records = ray.get(metric_refs)
                ray.wait(refs, num_returns=len(refs), fetch_local=False)
                if records and t % tc.log_interval == 0:
                    for r in records:
                        self.log.metrics({"stage": ctx.stage, "step": t + 1, **r})
                    merged = _merge(records)
                    self.log.metrics({"stage": ctx.stage, "step": t + 1,
                                      "updates_applied": (t + 1), **merged})
                    last = merged

        while True:
            try:
                while step < tc.steps:
                    self._inject_faults(ctx, step)
                    outs = [w.compute.options(num_returns=n_shards + 1).remote(step, *param_refs)
                            for w in ctx.workers]
                    param_refs = [ctx.shards[j].apply_sync.remote(step, *[o[j] for o in outs])
                                  for j in range(n_shards)]
                    window.append((step, [o[n_shards] for o in outs], param_refs))
                    drain(tc.max_in_flight)
                    step += 1
                    if self._due(step - 1, step) or step == tc.steps:
                        drain(0)
                        positions = ray.get([w.position.remote() for w in ctx.workers])
                        states = ray.get([w.local_state.remote() for w in ctx.workers])
                        self._checkpoint(ctx, step, positions=positions,
                                         seqs=[step] * len(ctx.workers),
                                         wsteps=[step] * len(ctx.workers), local_states=states)
                drain(0)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                if not _is_actor_failure(exc) or rollbacks >= 10:
                    raise
                rollbacks += 1
                window.clear()
                step = self._rollback(ctx)
                param_refs = [s.params_now.remote() for s in ctx.shards]
        return {"mode": "sync", "steps": step, "rollbacks": rollbacks, **last}

    def _rollback(self, ctx: _StageContext) -> int:
        """Sync recovery: wait for restarted actors, restore every shard and worker to the last
        checkpoint; returns its step."""
        import ray

        meta = ctx.last_checkpoint
        folder = storage.join(ctx.stage_dir, f"step{meta['step']:08d}")
        for _ in range(120):  # Ray restarts dead actors; wait until all answer
            try:
                ray.get([a.ping.remote() for a in ctx.workers] +
                        [s.info.remote() for s in ctx.shards])
                break
            except ray.exceptions.RayActorError:
                time.sleep(0.5)
        ray.get([s.load.remote(storage.join(folder, f"shard{j}.pt"))
                 for j, s in enumerate(ctx.shards)])
        ray.get([w.restore.remote(tuple(meta["positions"][k]), meta["local_states"][k],
                                  int(meta["step"])) for k, w in enumerate(ctx.workers)])
        self.log.event(f"stage {ctx.stage}: actor failure; every shard and worker restored from "
                       f"{folder} (step {meta['step']}); the lost steps are recomputed")
        return int(meta["step"])

    # ------------------------------------------------------------------ async
    def _run_async(self, ctx: _StageContext, start: int) -> dict:
        """Downpour: chunks per worker, taken in completion order with ``ray.wait``."""
        import ray

        tc = self.config.train
        n = tc.n_workers
        meta = ctx.last_checkpoint
        positions = [tuple(p) for p in meta["positions"]]
        seqs = list(meta["seqs"])
        wsteps = list(meta["worker_steps"])
        # the workers' own state (q, chain; with delta pushes their optimiser) for checkpoints,
        # as of each worker's last chunk; chunks ending near a checkpoint are asked for it
        states = list(meta["local_states"])
        step = start
        pending: dict = {}  # ref -> (worker, n_steps)
        started = [False] * n
        restarting = [False] * n
        last: dict = {}
        restarts = 0

        def in_flight() -> int:
            return sum(s for _, s in pending.values())

        # chunks of whole push periods (a chunk ends with a push)
        chunk = -(-tc.log_interval // tc.n_push) * tc.n_push

        def submit(k: int) -> None:
            n_steps = min(chunk, tc.steps - step - in_flight())
            if n_steps <= 0:
                return
            ahead = step + (n + 1) * chunk
            with_state = self._due(step, ahead) or ahead >= tc.steps
            ref = ctx.workers[k].run.remote(n_steps, positions[k], seqs[k], wsteps[k],
                                            with_state)
            pending[ref] = (k, n_steps)
            started[k] = True

        submit(0)
        if step >= tc.warm_start_steps:
            for k in range(1, n):
                submit(k)
        elif n > 1:
            self.log.event(f"stage {ctx.stage}: warm start: worker 0 alone for "
                           f"{tc.warm_start_steps} steps")
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            k, n_steps = pending.pop(ref)
            try:
                m = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                # died (ActorDiedError) or restarting (ActorUnavailableError): its chunk is lost
                if not restarting[k]:
                    restarting[k] = True
                    restarts += 1
                    self.log.event(
                        f"stage {ctx.stage} step {step}: worker {k} died "
                        f"({type(exc).__name__}); Ray restarts it; it replays from data "
                        f"position {positions[k]} with push seq {seqs[k]} (pushes that already "
                        f"landed are rejected, the rest of its chunk is lost)")
                time.sleep(0.2)
                submit(k)
                continue
            if restarting[k]:
                restarting[k] = False
                self.log.event(f"stage {ctx.stage} step {step}: worker {k} is back")
            before = step
            step += n_steps
            positions[k], seqs[k] = tuple(m["position"]), m["seq_end"]
            states[k] = m.pop("local_state", None)
            wsteps[k] += n_steps
            record = {"stage": ctx.stage, "step": step, **m}
            record.pop("position", None)
            self.log.metrics(record)
            last = {key: m[key] for key in ("recon_error", "fe_gap", "staleness_mean")
                    if key in m}
            if m["push_failures"]:
                infos = _get_when_alive(lambda: [s.info.remote() for s in ctx.shards])
                restored = [i["index"] for i in infos if i["restored_from"]]
                self.log.event(f"stage {ctx.stage} step {step}: worker {k} lost "
                               f"{m['push_failures']} push(es) to a dead shard; shards restored "
                               f"from checkpoint: {restored}")
            self._inject_faults(ctx, step)
            if self._due(before, step):
                self._checkpoint(ctx, step, positions=positions, seqs=seqs, wsteps=wsteps,
                                 local_states=states)
            if step >= tc.warm_start_steps:
                for j in range(1, n):
                    if not started[j]:
                        submit(j)
            submit(k)
        infos = _get_when_alive(lambda: [s.info.remote() for s in ctx.shards])
        for i in infos:
            if i["restored_from"]:
                self.log.event(f"stage {ctx.stage}: shard {i['index']} was restored from "
                               f"{i['restored_from']}")
        if ctx.last_checkpoint["step"] != step:
            self._checkpoint(ctx, step, positions=positions, seqs=seqs, wsteps=wsteps,
                             local_states=states)
        return {"mode": "async", "steps": step, "worker_restarts": restarts, **last}


class _StageContext:
    """Actors and bookkeeping of the stage being trained."""

    def __init__(self, stage, stage_dir, layout, shards, workers, meta) -> None:
        self.stage, self.stage_dir, self.layout = stage, stage_dir, layout
        self.shards, self.workers = shards, workers
        self.last_checkpoint = meta


def _get_when_alive(make_refs: Callable[[], list], attempts: int = 120) -> list:
    """``ray.get(make_refs())``, retried while an actor is restarting (Ray answers
    ``ActorUnavailableError`` meanwhile) or was just restarted."""
    import ray

    for attempt in range(attempts):
        try:
            return ray.get(make_refs())
        except ray.exceptions.RayActorError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _merge(records: list[dict]) -> dict:
    """Mean over workers of the monitored figures; total frames/s."""
    out: dict[str, float] = {}
    for key in ("recon_error", "fe_gap"):
        values = [r[key] for r in records if key in r]
        if values:
            out[key] = float(np.mean(values))
    out["frames_per_s_total"] = float(sum(r.get("frames_per_s", 0.0) for r in records))
    return out


def _is_actor_failure(exc: BaseException) -> bool:
    """An actor died (possibly seen through a task that depended on its result)."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError):
        return True
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (ray.exceptions.RayActorError, OutOfStep)):
        return True
    return any(name in str(exc) for name in ("ActorDiedError", "OutOfStep"))


__all__ = ["Trainer", "init_ray", "check_data", "ParameterShard"]
