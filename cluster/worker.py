"""Model replicas: Ray actors that read their own dataset shards and compute CD updates.

A worker holds a full ``RBMStack`` (earlier stages frozen at their trained values, the current
stage's parameters refreshed from the parameter server), reads a disjoint set of Parquet shards
with the pipeline's :class:`~pipeline.reader.FrameReader`, turns each batch into the current
stage's input with ``RBMStack.stage_input`` (stage k+1 trains on stage-k features, greedy
layer-wise training, Hinton et al. 2006) and computes ``rbm.compute_update``.

Why ``FrameReader`` and not ``ray.data.read_parquet(...).streaming_split(n)``: a split of a
streaming dataset is coordinated across consumers (a slow consumer holds back the shared
executor, which breaks Downpour's "a slow worker never stalls the others"), and its order is not
fixed from run to run, while the synchronous mode and ``--resume`` need every worker to see the
same batches in the same order and to seek to a saved position. FrameReader gives each worker a
deterministic stream over its own shards, positioned by ``(epoch, batch)``.

Two schedules:

- :meth:`Worker.compute` (sync): one batch against the parameters the driver passes in (the
  previous step's ``apply_sync`` results, as ObjectRefs), returns one update part per shard.
- :meth:`Worker.run` (async, Downpour): ``n_steps`` batches on its own, fetching every
  ``n_fetch`` steps and pushing every ``n_push`` steps to all shards without waiting (at most
  ``max_in_flight`` pushes outstanding per shard). A push carries the summed updates
  (``push="gradient"``) or, with ``push="delta"``, the change the replica made to its own
  parameters with its own optimiser (read-my-writes); ``push="average"`` weights that change by
  ``1 / n_workers`` (asynchronous model averaging). A push is serialised into the object
  store by a sender thread (one, so every shard sees a worker's sequence numbers in order)
  while the next step computes. When the next step fetches, the push asks the shard for the
  parameters back (one call per shard, with the push applied); otherwise a fetch that is not a
  prefetch waits until the worker's own pushes are submitted, so the shards (which run one
  caller's calls in submission order) answer it with those pushes applied. Transfers are
  float32 or bfloat16 (``transfer_dtype``). The next batch's input (reading it and turning
  it into the stage's visible units, about a third of a step at stage 0 of the demo) does not
  depend on the parameters, so it is prepared while a fetch is in flight: the wait for the
  parameters overlaps with compute, without adding staleness. The chunk result includes the
  seconds spent per phase (``seconds_fetch`` waiting for parameters, ``seconds_input``,
  ``seconds_compute``, ``seconds_push``, ``seconds_wait``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from cluster.config import DataConfig
from cluster.ps import ONE_THREAD_ENV, OutOfStep
from cluster.sharding import TRANSFER_DTYPES, ShardLayout, pack, to_numpy
from models.optim import UpdateConfig
from models.stack import RBMStack, StackConfig
from pipeline.reader import FrameReader, list_shards, shards_for_worker


def split_holdout(root: str, holdout_frames: int) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards): the last shard is held out when there are >= 2 and
    ``holdout_frames`` > 0 (used for the free-energy gap)."""
    shards = list_shards(root)
    if holdout_frames > 0 and len(shards) >= 2:
        return shards[:-1], shards[-1:]
    return shards, []


def _updater_state_on(state: Mapping, device) -> dict:
    """A ``ParameterUpdater.state_dict()`` (step count, dicts of tensors) with its tensors on
    ``device``."""
    return {k: {n: t.to(device) for n, t in v.items()} if isinstance(v, dict) else v
            for k, v in state.items()}


def step_seed(seed: int, stage: int, worker: int, step: int) -> int:
    """A generator seed for one (stage, worker, step): per-step seeding makes the random stream
    independent of where a run was resumed."""
    return int(np.random.SeedSequence([seed, stage, worker, step]).generate_state(1)[0])


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class BatchStream:
    """One worker's deterministic stream of uint8 batches, positioned by ``(epoch, batch)``.

    Epoch ``e`` reads the worker's shards with reader seed ``seed + e`` (a fresh shuffle each
    epoch when ``shuffle_buffer`` > 0), dropping the last partial batch.
    """

    def __init__(self, data: DataConfig, shards: list[str], seed: int,
                 position: tuple[int, int] = (0, 0)) -> None:
        if not shards:
            raise ValueError("this worker has no dataset shards: use fewer workers or re-ingest "
                             "with smaller shards (pipeline shard size)")
        self.data, self.shards, self.seed = data, shards, seed
        self.epoch, self.batch = 0, 0
        self._it = None
        self.seek(position)

    def _reader(self, epoch: int) -> FrameReader:
        return FrameReader(self.data.path, batch_size=self.data.batch_size, shards=self.shards,
                           shuffle_buffer=self.data.shuffle_buffer, seed=self.seed + epoch,
                           drop_last=True)

    def seek(self, position: Sequence[int]) -> None:
        """Continue from ``(epoch, batch)`` (skips the batches before it)."""
        self.epoch, self.batch = int(position[0]), 0
        self._it = iter(self._reader(self.epoch))
        for _ in range(int(position[1])):
            next(self._it)
            self.batch += 1

    @property
    def position(self) -> tuple[int, int]:
        """Where the next batch comes from."""
        return (self.epoch, self.batch)

    def next(self) -> np.ndarray:
        """The next batch (N, C, H, W) uint8, rolling over to the next epoch."""
        for _ in range(2):
            try:
                x = next(self._it)
                self.batch += 1
                return x
            except StopIteration:
                self.epoch, self.batch = self.epoch + 1, 0
                self._it = iter(self._reader(self.epoch))
        raise ValueError(f"worker shards {self.shards} hold fewer than batch_size="
                         f"{self.data.batch_size} frames; lower data.batch_size")


class Worker:
    """A model replica (Ray actor body). See the module docstring for the two schedules.

    Parameters
    ----------
    index, n_workers : this replica and how many there are (for the disjoint shard split).
    data, model, update : config sections.
    stage : the stack stage being trained.
    layout : ``ShardLayout.to_dict()`` of that stage.
    shards : parameter-server actor handles (async mode; may be empty in sync mode).
    stack_state : ``RBMStack.state_dict()`` with the earlier stages trained (None at stage 0).
    holdout : held-out uint8 frames for the free-energy gap (may be None).
    seed : run seed; position : start ``(epoch, batch)``; local_state : the RBM's own state
        (sparsity estimate ``q``, persistent chain) to resume with.
    """

    def __init__(self, index: int, n_workers: int, *, data: DataConfig, model: StackConfig,
                 update: UpdateConfig, stage: int, layout: Mapping, shards: Sequence = (),
                 stack_state: Mapping | None = None, holdout: np.ndarray | None = None,
                 seed: int = 0, position: Sequence[int] = (0, 0),
                 local_state: Mapping | None = None, n_fetch: int = 1, n_push: int = 1,
                 max_in_flight: int = 2, log_interval: int = 10, slow_delay_s: float = 0.0,
                 device: str = "cpu", step: int = 0, prefetch: bool = False,
                 push: str = "gradient", transfer_dtype: str = "float32") -> None:
        torch.set_num_threads(1)
        self.index, self.n_workers, self.stage = index, n_workers, stage
        self.device = resolve_device(device)
        self.layout = ShardLayout.from_dict(layout)
        self.shards = list(shards)
        self.seed = seed
        self.n_fetch, self.n_push = n_fetch, n_push
        if push not in ("gradient", "delta", "average"):
            raise ValueError(f"push={push!r}: use 'gradient', 'delta' or 'average'")
        self.deltas = push != "gradient"  # the replica applies its updates and pushes changes
        # "average": each replica's change counts 1/n_workers on the shards (model averaging)
        self.delta_weight = 1.0 / n_workers if push == "average" else 1.0
        if transfer_dtype not in TRANSFER_DTYPES:
            raise ValueError(f"transfer_dtype={transfer_dtype!r}: use one of {TRANSFER_DTYPES}")
        self.transfer_dtype = transfer_dtype
        self.max_in_flight, self.log_interval = max_in_flight, log_interval
        self.slow_delay_s = slow_delay_s
        self.stack = RBMStack(model, update=update, generator=torch.Generator().manual_seed(seed),
                              device=self.device)
        if stack_state is not None:
            self.stack.load_state_dict(stack_state)
        self.rbm = self.stack.rbms[stage]
        if local_state:
            self._load_local_state(local_state)
        train, _ = split_holdout(data.path, data.holdout_frames)
        mine = shards_for_worker(train, index, n_workers)
        self.stream = BatchStream(data, mine, seed=seed * 7919 + index, position=position)
        self.holdout_v = None
        if holdout is not None and len(holdout):
            self.holdout_v = self._stage_input(holdout)
        self.next_step = step  # sync: the step this replica's data position belongs to
        self._since_fetch: int | None = None  # async: worker steps since the last fetch
        self.prefetch = prefetch
        self._prefetch_refs: list | None = None  # async: a fetch requested one step early
        self._fetch_version: list[int] = []
        # delta pushes: the replica's parameters when it last pushed (its unpushed changes are
        # params - _base) and _base as it was when the pending prefetch was requested
        self._base: dict[str, torch.Tensor] | None = None
        self._prefetch_base: dict[str, torch.Tensor] | None = None
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="push")
        self._sending: collections.deque = collections.deque()  # async: pushes being sent
        self._push_fetch = None  # async: the _send future whose pushes return the parameters

    # ------------------------------------------------------------------ helpers
    def _stage_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (N, C, H, W) -> what this stage's RBM sees as ``v``."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return self.stack.stage_input(x, self.stage)

    def _load_local_state(self, state: Mapping) -> None:
        """The replica's own RBM state: sparsity estimate q and persistent chain, and with
        delta pushes its optimiser state (momentum velocity or Adagrad sums, step count)."""
        for name in ("q", "chain_h"):
            value = state.get(name)
            setattr(self.rbm, name, None if value is None else
                    torch.as_tensor(np.array(value)).to(self.device, self.rbm.dtype))
        if self.deltas and state.get("updater") is not None:
            self.rbm.updater.load_state_dict(_updater_state_on(state["updater"], self.device))

    def local_state(self) -> dict:
        """What :meth:`_load_local_state` takes back (stored in checkpoints)."""
        state = {name: None if getattr(self.rbm, name) is None else
                 getattr(self.rbm, name).detach().cpu().numpy() for name in ("q", "chain_h")}
        if self.deltas:  # serialised when returned (Ray), so no copy is needed here
            state["updater"] = _updater_state_on(self.rbm.updater.state_dict(), "cpu")
        return state

    def position(self) -> tuple[int, int]:
        """The data position ``(epoch, batch)`` of the next batch."""
        return self.stream.position

    def _monitor(self, v: torch.Tensor) -> dict:
        """Reconstruction error and free-energy gap F(held-out) - F(train) (Hinton 2010, sec. 6)."""
        out = {"recon_error": float(self.rbm.reconstruction_error(v))}
        if self.holdout_v is not None:
            n = min(len(self.holdout_v), len(v))
            held = self.rbm.free_energy(self.holdout_v[:n]).mean()
            out["fe_gap"] = float(held - self.rbm.free_energy(v[:n]).mean())
        return out

    def _next_input(self) -> torch.Tensor:
        """The next batch as this stage's visible input. It does not depend on the parameters,
        so an async worker prepares it while its fetch is in flight."""
        return self._stage_input(self.stream.next())

    def _compute(self, step: int, v: torch.Tensor | None = None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch (the next one, or ``v`` prepared by :meth:`_next_input`) -> (update, v)."""
        if self.slow_delay_s:
            time.sleep(self.slow_delay_s)
        if v is None:
            v = self._next_input()
        g = torch.Generator(device=self.device).manual_seed(
            step_seed(self.seed, self.stage, self.index, step))
        return self.rbm.compute_update(v, generator=g), v

    # ------------------------------------------------------------------ sync
    def compute(self, step: int, *parts: Mapping[str, np.ndarray]) -> tuple:
        """Sync step ``step``: load the parameters (one part per shard), compute the update on
        the next batch; returns one numpy update part per shard, then a metrics dict."""
        t0 = time.perf_counter()
        if step != self.next_step:
            raise OutOfStep(f"worker {self.index} is at step {self.next_step} (restarted?) but "
                            f"was asked for step {step}")
        self.layout.join(parts, out=self.rbm.params)
        update, v = self._compute(step)
        self.next_step += 1
        metrics = {"worker": self.index, "step": step}
        if step % self.log_interval == 0:
            metrics.update(self._monitor(v))
        metrics["frames_per_s"] = len(v) / max(time.perf_counter() - t0, 1e-9)
        return (*[to_numpy(p) for p in self.layout.split_all(update)], metrics)

    # ------------------------------------------------------------------ async
    def _fetch(self, while_waiting=None):
        """Pull every shard's slices into the local replica (blocking; retried while a shard
        restarts). Uses the prefetched request when there is one. ``while_waiting()`` (work
        that does not need the parameters) runs once the request is on its way, before
        blocking on the answer; returns its result."""
        import ray

        refs, self._prefetch_refs = self._prefetch_refs, None
        base, self._prefetch_base = (self._prefetch_base if refs else self._base), None
        answered_push, self._push_fetch = self._push_fetch, None
        if refs is None and answered_push is None:
            if self._sending:
                # a fresh fetch queues behind this worker's own pushes (the shards serve an
                # actor's calls in submission order), so the parameters include them
                concurrent.futures.wait(self._sending)
            refs = self._request_fetch()
        prepared = while_waiting() if while_waiting is not None else None
        if answered_push is not None:
            # the last push asked for the parameters: its answer is this fetch (one round trip
            # per shard instead of two, and nothing else in between)
            refs = [ref for ref, _, _ in answered_push.result()]
        for attempt in range(60):
            try:
                results = ray.get(refs or self._request_fetch())
                break
            except ray.exceptions.RayActorError:
                if attempt == 59:
                    raise
                refs, base, answered_push = None, self._base, None
                time.sleep(0.5)
        if answered_push is not None:  # (version the push was applied at, fetch answer)
            results = [r[1] for r in results]
        self._fetch_version = [r[0] for r in results]
        parts = [r[1] for r in results]
        if self.deltas and base is not None:
            # read-my-writes: the shards' parameters plus this replica's changes they have not
            # seen (those made since the request); params - _base (unpushed) is unchanged
            fetched = self.layout.join(parts)
            for k, p in self.rbm.params.items():
                shift = fetched[k].sub_(base[k])
                p.add_(shift)
                self._base[k].add_(shift)
        else:
            self.layout.join(parts, out=self.rbm.params)
            if self.deltas:
                self._base = {k: p.clone() for k, p in self.rbm.params.items()}
        self._since_fetch = 0
        return prepared

    def _request_fetch(self) -> list:
        """One fetch call per shard, in this worker's transfer dtype."""
        return [s.fetch.remote(self.transfer_dtype) for s in self.shards]

    def _send(self, seq: int, update: Mapping[str, torch.Tensor],
              fetched: Sequence[int], reply: bool = False) -> list[tuple]:
        """Push ``update`` with sequence number ``seq`` to every shard (sender thread), asking
        for the parameters back when ``reply``; returns ``(ref, shard, version fetched)`` for
        each shard."""
        parts = self.layout.split_all(update)
        dtype = self.transfer_dtype
        answer = dtype if reply else None
        return [(shard.push.remote(self.index, seq, pack(parts[j], dtype), answer), j, fetched[j])
                for j, shard in enumerate(self.shards)]

    def run(self, n_steps: int, position: Sequence[int], seq_start: int,
            step_start: int, with_state: bool = False) -> dict:
        """Downpour: ``n_steps`` local steps from data ``position``; pushes carry sequence
        numbers ``seq_start, seq_start + 1, ...``. Returns this chunk's metrics, after every push
        has been answered (so a chunk's updates are all applied or all accounted as failed),
        plus ``local_state`` (:meth:`local_state`, for a checkpoint) when ``with_state``."""
        import ray

        t0 = time.perf_counter()
        if tuple(position) != self.stream.position:
            self.seek(position)
        seq = seq_start
        acc: dict[str, torch.Tensor] | None = None
        n_acc = 0
        pending: dict = {}  # push ref -> (shard, fetch version)
        sending = self._sending = collections.deque()  # futures of _send, oldest first
        stale: list[int] = []
        failures = rejected = pushes = frames = 0
        monitors: list[dict] = []
        # seconds per phase: waiting for parameters, preparing inputs, computing updates,
        # handing pushes over, waiting for pushes in flight
        timing = dict.fromkeys(("fetch", "input", "compute", "push", "wait"), 0.0)

        def next_input() -> torch.Tensor:
            t = time.perf_counter()
            v = self._next_input()
            timing["input"] += time.perf_counter() - t
            return v

        def settle(refs) -> None:
            nonlocal failures, rejected
            for ref in refs:
                shard, fetched = pending.pop(ref)
                try:
                    version = ray.get(ref)
                except ray.exceptions.RayActorError:
                    failures += 1
                    continue
                if isinstance(version, tuple):  # a push that also returned the parameters
                    version = version[0]
                if version < 0:
                    rejected += 1
                else:
                    stale.append(version - fetched)

        def collect(block: bool) -> None:
            """Move finished sends' refs into ``pending`` (all of them when ``block``)."""
            while sending and (block or sending[0].done()):
                for ref, j, fetched in sending.popleft().result():
                    pending[ref] = (j, fetched)

        def push() -> None:
            nonlocal acc, n_acc, seq, pushes
            t = time.perf_counter()
            if self.deltas:  # the change since the last push; _base is replaced, not changed
                acc = {k: (p - self._base[k]).mul_(self.delta_weight)
                       for k, p in self.rbm.params.items()}
                self._base = {k: p.clone() for k, p in self.rbm.params.items()}
            # Serialising the update into the object store (a few ms for MBs) happens on the
            # sender thread, off the compute path; one thread keeps every shard's seqs in order.
            # When the next step fetches, this push brings the parameters back with it.
            reply = not self.prefetch and self._since_fetch >= self.n_fetch
            sending.append(self._sender.submit(self._send, seq, acc, list(self._fetch_version),
                                               reply))
            if reply:
                self._push_fetch = sending[-1]
            seq += 1
            pushes += 1
            acc, n_acc = None, 0  # handed over: the next step's update is a new tensor
            collect(block=False)
            if pending:  # account for the pushes already answered (no waiting)
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                settle(done)
            timing["push"] += time.perf_counter() - t
            limit = self.max_in_flight * len(self.shards)
            if len(pending) + len(sending) * len(self.shards) > limit:
                # bounded in flight: wait for the oldest
                t = time.perf_counter()
                collect(block=True)
                done, _ = ray.wait(list(pending), num_returns=max(len(pending) - limit, 0))
                settle(done)
                timing["wait"] += time.perf_counter() - t

        for i in range(n_steps):
            t = time.perf_counter()
            v = None
            if self._since_fetch is None or self._since_fetch >= self.n_fetch:
                # the next batch's input is prepared while the fetch is in flight
                input_before = timing["input"]
                v = self._fetch(while_waiting=next_input)
                timing["fetch"] += time.perf_counter() - t - (timing["input"] - input_before)
            if (self.prefetch and self._prefetch_refs is None
                    and self._since_fetch + 1 >= self.n_fetch):
                # overlap: the next fetch travels while this step computes
                self._prefetch_refs = self._request_fetch()
                self._prefetch_base = self._base
            if v is None:
                v = next_input()
            t1 = time.perf_counter()
            update, v = self._compute(step_start + i, v)
            timing["compute"] += time.perf_counter() - t1
            frames += len(v)
            if (step_start + i) % self.log_interval == 0:
                monitors.append(self._monitor(v))
            if self.deltas:
                self.rbm.apply_update(update)  # the replica moves; the push carries the change
            elif acc is None:
                acc = update
            else:
                for k, u in update.items():
                    acc[k].add_(u)
            n_acc += 1
            self._since_fetch += 1
            if n_acc >= self.n_push:
                push()
        if n_acc:
            push()
        t = time.perf_counter()
        collect(block=True)
        if pending:
            settle(list(pending))
        timing["wait"] += time.perf_counter() - t
        seconds = time.perf_counter() - t0
        out = {"worker": self.index, "steps": n_steps, "frames": frames, "seconds": seconds,
               "frames_per_s": frames / max(seconds, 1e-9), "position": list(self.stream.position),
               "seq_end": seq, "pushes": pushes, "pushes_rejected": rejected,
               "push_failures": failures,
               "staleness_mean": float(np.mean(stale)) if stale else 0.0,
               "staleness_max": int(max(stale)) if stale else 0,
               **{f"seconds_{k}": v for k, v in timing.items()}}
        for key in ("recon_error", "fe_gap"):
            values = [m[key] for m in monitors if key in m]
            if values:
                out[key] = float(np.mean(values))
        if with_state:
            out["local_state"] = self.local_state()
        return out

    def seek(self, position: Sequence[int]) -> None:
        """Move the data stream to ``(epoch, batch)`` (after a restart or a rollback)."""
        self.stream.seek(position)
        self._since_fetch = None
        self._prefetch_refs = self._push_fetch = None
        self._base = self._prefetch_base = None

    def restore(self, position: Sequence[int], local_state: Mapping | None, step: int) -> None:
        """Sync rollback: data position, RBM local state and step of a checkpoint."""
        self.seek(position)
        self.rbm.q = self.rbm.chain_h = None
        if local_state:
            self._load_local_state(local_state)
        self.next_step = step

    def ping(self) -> int:
        """For readiness checks."""
        import os

        return os.getpid()


def worker_actor_class(max_restarts: int = -1):
    """``Worker`` as a Ray actor class, restarted by Ray when it dies; tasks not retried; one
    thread (``cluster.ps.ONE_THREAD_ENV``)."""
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=0,
                      runtime_env=ONE_THREAD_ENV)(Worker)
