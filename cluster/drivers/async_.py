"""The asynchronous schedule (Downpour SGD, Dean et al. 2012).

Each worker runs chunks of ``log_interval`` steps (rounded up to whole push periods) on its own
(fetch every ``n_fetch``, push every ``n_push``); the driver takes chunk results in completion
order (``ray.wait``), so a slow worker never holds up the others. A dead worker is restarted by
Ray (``max_restarts``) and replays its chunk from its last reported data position with the same
push sequence numbers (what already landed is rejected, so no update is applied twice). A dead
shard is restarted by Ray and restores its last checkpoint. When a lost node's resources are
missing, Ray cannot place an actor again: the driver goes on with the workers that run, says
what the others wait for, takes them back when they answer, and fails the run with one line when
a shard (or every worker) stays unplaced past ``train.placement_timeout_s``
(:mod:`cluster.liveness`).

A chunk's record carries ``step`` = the stage's steps done once the chunk is accounted (the
meaning of ``step`` in every ``metrics.jsonl`` record, see :mod:`cluster.runlog`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray

from cluster.drivers.context import POLL_S, StageContext
from cluster.runlog import show_recon_error
from cluster.stage import get_from_shards


@dataclass
class Replica:
    """The driver's record of one async worker: where its next chunk starts."""

    actor: Any
    position: tuple[int, int]
    seq: int  # the next push's sequence number
    steps: int  # worker steps done (its generator's step counter)
    local_state: Mapping | None  # q, chain (and optimiser) as of its last chunk (None: none yet)


@dataclass
class _Chunks:
    """Chunks in flight: ObjectRef -> (worker, steps)."""

    refs: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return sum(n for _, n in self.refs.values())


class AsyncDriver:
    """Downpour: chunks of whole push periods per worker, taken in completion order; goes on
    with the workers that run (``watch``) and takes a worker back when it answers again."""

    def __init__(self, context: StageContext) -> None:
        self.ctx = context
        self.actors, self.bar, self.watch = context.actors, context.bar, context.watch
        self.tc = tc = context.train
        self.log = context.log
        meta = context.meta
        self.replicas = [Replica(w, tuple(meta["positions"][k]), meta["seqs"][k],
                                 meta["worker_steps"][k], meta["local_states"][k])
                         for k, w in enumerate(self.actors.workers)]
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
        shards = self.actors.shards
        infos = get_from_shards(self.watch, f"{self.where}: final checkpoint",
                                lambda: [s.info.remote() for s in shards])
        for info in self.actors.restarted_shards(infos):
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
        self.ctx.faults.at_step(self.actors, self.step)
        if self.ctx.schedule.due(before, self.step):
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
        """Worker ``k``'s next chunk, if steps remain. Every chunk returns the worker's state
        with its data position, so a checkpoint, whenever it comes, pairs each worker's position
        with the state it had there (asking only near a checkpoint left a slower worker's
        state out of it)."""
        tc, r = self.tc, self.replicas[k]
        n_steps = min(self.chunk, tc.steps - self.step - self.chunks.steps)
        if n_steps <= 0:
            return
        ref = r.actor.run.remote(n_steps, r.position, r.seq, r.steps)
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
        r.local_state = m.pop("local_state")
        r.steps += n_steps
        self.log.metrics({"stage": stage, **m, "step": self.step})
        self.last = {key: m[key] for key in ("recon_error", "fe_gap", "staleness_mean")
                     if key in m}
        self.bar.update(n_steps)
        show_recon_error(self.bar, m)
        if m["push_failures"]:
            self.log.event(f"{self.where}: worker {k} lost {m['push_failures']} push(es) to a "
                           f"shard that did not answer (a restarted shard restores the last "
                           f"checkpoint)")

    def _checkpoint(self) -> None:
        rs = self.replicas
        self.ctx.checkpointer.save(self.step, positions=[r.position for r in rs],
                                   seqs=[r.seq for r in rs], wsteps=[r.steps for r in rs],
                                   local_states=[r.local_state for r in rs], watch=self.watch)
        self.last_checkpoint_step = self.step
