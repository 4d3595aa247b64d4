"""The synchronous schedule (reproducible).

Step t = every worker computes an update on its next batch against the parameters of step t-1;
each shard averages its parts in worker order and applies them once (``apply_sync``), returning
its new slices, which are the arguments of step t+1. The driver passes only ObjectRefs and keeps
at most ``max_in_flight`` steps outstanding. On a cluster the values behind them go from node to
node; on a local Ray those up to 1 MiB travel in the tasks' replies and requests, held by the
driver, instead of the shared-memory object store
(:data:`pipeline.pool.LOCAL_RAY_SYSTEM_CONFIG`). With ``train.sync_transport = "compiled"`` the
same step runs as one compiled graph instead of two calls (:mod:`cluster.drivers.compiled`),
while every worker and shard is on the driver's node (else through the tasks, said in the
events).
Any actor failure rolls every shard and worker back to the last checkpoint, so a sync run with
faults equals one without; before the rollback every actor must answer again
(:mod:`cluster.liveness` logs what a missing one waits for, and the run fails with one line past
``train.placement_timeout_s``).

Every ``log_interval`` steps the driver logs one record per worker and one of the whole stage
(the mean over workers); all of them carry ``step`` = t + 1, the steps done once step t is
applied (the meaning of ``step`` in every ``metrics.jsonl`` record, see :mod:`cluster.runlog`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

import ray

from cluster.checkpoint import step_folder
from cluster.drivers.context import StageContext
from cluster.failures import TrainingFailed, last_line
from cluster.ps import OutOfStep
from cluster.runlog import show_recon_error
from cluster.worker import mean_monitored
from pipeline import storage

MAX_ROLLBACKS = 10
"""Rollbacks to one checkpoint before the run stops: actors that fail again each time the
steps after it are tried (a cause that is not an actor's death) end the run in one line. A
run that passes a newer checkpoint between failures goes on however many it meets."""

if TYPE_CHECKING:
    from cluster.drivers.compiled import CompiledStepWindow


def is_actor_failure(exc: BaseException) -> bool:
    """An actor died or lost its state, seen directly or through a task that depended on it
    (Ray raises the task's error as an instance of its cause's type as well), or a compiled
    graph's channel closed (Ray tears a graph down when one of its actors dies; a cause that
    is not an actor fails again after the rollback, and the run stops after
    :data:`MAX_ROLLBACKS` of them in a row)."""
    causes = (ray.exceptions.RayActorError, ray.exceptions.RayChannelError, OutOfStep)
    return isinstance(exc, causes) or isinstance(getattr(exc, "cause", None), causes)


def merge_records(records: list[dict]) -> dict:
    """The whole stage's figures of one step: the mean over workers of the monitored figures
    (:func:`cluster.worker.mean_monitored`) and the total frames/s."""
    out = mean_monitored(records)
    out["frames_per_s_total"] = float(sum(r.get("frames_per_s", 0.0) for r in records))
    return out


def submit_step(workers: list, shards: list, step: int, param_refs: list) -> tuple[list, list]:
    """Step ``step`` of the schedule, sent as ObjectRefs (nothing waits): every worker computes
    its update against ``param_refs`` (each shard's slices after step ``step - 1``), then each
    shard applies the mean of its parts. Returns (the workers' metric refs, the shards' new
    slice refs: the next step's ``param_refs``)."""
    n = len(shards)
    outs = [w.compute.options(num_returns=n + 1).remote(step, *param_refs) for w in workers]
    return ([o[n] for o in outs],
            [shards[j].apply_sync.remote(step, *[o[j] for o in outs]) for j in range(n)])


def await_step(metric_refs: list, param_refs: list) -> list[dict]:
    """Wait until a step from :func:`submit_step` is applied; its workers' metric records."""
    records = ray.get(metric_refs)
    ray.wait(param_refs, num_returns=len(param_refs), fetch_local=False)
    return records


class StepWindow:
    """Synchronous steps in flight, oldest first: each sent by :func:`submit_step` against the
    parameters the step before returns (starting from ``param_refs``), and awaited in order."""

    def __init__(self, workers: list, shards: list, param_refs: list) -> None:
        self.workers, self.shards, self.param_refs = workers, shards, param_refs
        self.steps: collections.deque = collections.deque()  # (step, metric refs, param refs)

    def submit(self, step: int) -> None:
        metric_refs, self.param_refs = submit_step(self.workers, self.shards, step,
                                                   self.param_refs)
        self.steps.append((step, metric_refs, self.param_refs))

    def applied(self, keep: int) -> Iterator[tuple[int, list[dict]]]:
        """Wait for the oldest steps until ``keep`` are outstanding; yields each one's (step,
        its workers' metric records) as it is applied."""
        while len(self.steps) > keep:
            step, metric_refs, param_refs = self.steps.popleft()
            yield step, await_step(metric_refs, param_refs)

    def close(self) -> None:
        """Drop the steps in flight (nothing else is held)."""
        self.steps.clear()


def step_window(transport: str):
    """The window class of ``train.sync_transport``: :class:`StepWindow` (``"tasks"``) or
    :class:`cluster.drivers.compiled.CompiledStepWindow` (``"compiled"``)."""
    if transport == "compiled":
        from cluster.drivers.compiled import CompiledStepWindow

        return CompiledStepWindow
    return StepWindow


class SyncDriver:
    """Fixed-order synchronous steps, pipelined through ObjectRefs; rollback on failure (after
    every actor answers again: ``watch`` says what the steps wait for)."""

    def __init__(self, context: StageContext) -> None:
        self.ctx = context
        self.actors, self.bar, self.watch = context.actors, context.bar, context.watch
        self.tc = context.train
        self.log = context.log
        self.last_checkpoint = context.meta
        self.step = int(context.meta["step"])
        self.window: StepWindow | CompiledStepWindow | None = None  # new at each (re)start
        self.last: dict = {}

    def run(self) -> dict:
        rollbacks = 0
        in_a_row = 0  # failures since the run last passed a checkpoint
        rolled_to = None
        try:
            while True:
                try:
                    self._steps()
                    break
                except Exception as exc:
                    self._close_window()  # before any actor is restored: no step runs meanwhile
                    if not is_actor_failure(exc):
                        raise
                    checkpoint = int(self.last_checkpoint["step"])
                    in_a_row = in_a_row + 1 if checkpoint == rolled_to else 1
                    rolled_to = checkpoint
                    if in_a_row > MAX_ROLLBACKS:
                        raise TrainingFailed(
                            f"stage {self.actors.stage} step {self.step}: {in_a_row} actor "
                            f"failures in a row before the run passed its checkpoint at step "
                            f"{checkpoint} (the last: {last_line(exc)[:200]}); see the actors' "
                            "logs (Ray's session folder), then continue with --resume"
                        ) from None
                    rollbacks += 1
                    self._rollback()
        finally:  # Ctrl-C too: no compiled graph is left running
            self._close_window()
        return {"mode": "sync", "steps": self.step, "rollbacks": rollbacks, **self.last}

    def _steps(self) -> None:
        """Every worker computes step t against step t-1's parameters; each shard applies the
        mean of its parts; at most ``max_in_flight`` steps outstanding."""
        tc, actors = self.tc, self.actors
        self.window = self._open_window()
        while self.step < tc.steps:
            step = self.step
            self.ctx.faults.at_step(actors, step)
            self.window.submit(step)
            self._drain(tc.max_in_flight)
            self.step += 1
            if self.ctx.schedule.due(step, self.step) or self.step == tc.steps:
                self._drain(0)
                self._checkpoint()
        self._drain(0)

    def _open_window(self) -> StepWindow | CompiledStepWindow:
        """The window of ``train.sync_transport`` from the shards' parameters now, said in the
        events; a compiled graph only while every worker and shard is on the driver's node
        (:mod:`cluster.drivers.compiled`), else Ray tasks. Checked at every (re)start: actors
        restarted after a node is lost may land elsewhere."""
        actors, stage = self.actors, self.actors.stage
        window_class = step_window(self.tc.sync_transport)
        if window_class is not StepWindow:
            from cluster.drivers.compiled import spread_over

            nodes = spread_over([*actors.workers, *actors.shards])
            if nodes > 1:
                window_class = StepWindow
                self.log.event(f'stage {stage}: train.sync_transport="compiled" needs every '
                               f"worker and shard on the driver's node, and with the driver they "
                               f"run on {nodes} nodes: the steps go through Ray tasks (the same "
                               "arithmetic)")
            else:
                self.log.event(f"stage {stage}: synchronous steps through one compiled graph")
        return window_class(actors.workers, actors.shards,
                            [s.params_now.remote() for s in actors.shards])

    def _close_window(self) -> None:
        window, self.window = self.window, None
        if window is not None:
            window.close()

    def _drain(self, keep: int) -> None:
        """Wait for the oldest steps until ``keep`` are outstanding; log their metrics."""
        for t, records in self.window.applied(keep):
            self.bar.update(1)
            if records and t % self.tc.log_interval == 0:
                self._log_step(t, records)

    def _log_step(self, t: int, records: list[dict]) -> None:
        """Step ``t``'s records: one per worker, then the whole stage's; each with ``step`` =
        t + 1 (a worker's own step index ``t`` does not override it)."""
        stage = self.actors.stage
        for r in records:
            self.log.metrics({"stage": stage, **r, "step": t + 1})
        self.last = merge_records(records)
        self.log.metrics({"stage": stage, "step": t + 1, "updates_applied": t + 1, **self.last})
        show_recon_error(self.bar, self.last)

    def _checkpoint(self) -> None:
        workers, step = self.actors.workers, self.step
        positions = ray.get([w.position.remote() for w in workers])
        states = ray.get([w.local_state.remote() for w in workers])
        self.last_checkpoint = self.ctx.checkpointer.save(
            step, positions=positions, seqs=[step] * len(workers),
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
        self.bar.update(int(meta["step"]) - self.bar.n)  # back to the checkpoint: what was shown
        self.step = int(meta["step"])
