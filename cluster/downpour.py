"""The Downpour protocol of one model replica, without Ray: fetch, push, settle.

Downpour SGD (Dean et al. 2012): a replica fetches the parameters from every shard every
``n_fetch`` steps and pushes to every shard every ``n_push`` steps, never waiting for the other
replicas. :class:`Downpour` holds one replica's side of that conversation:

- :meth:`Downpour.fetch` pulls every shard's slices into the replica (retried while a shard
  restarts). Work that does not need the parameters (the next batch's input) runs while the
  request travels.
- :meth:`Downpour.step` accounts one step's update (the :mod:`cluster.push` strategy decides
  what that means) and pushes when a period is complete. A push is serialised into the object
  store by one sender thread (so every shard sees a replica's sequence numbers in order) while
  the next step computes. When the next step fetches, the push asks for the parameters back
  (push and fetch in one call per shard); otherwise a fetch waits until the replica's own pushes
  are submitted, so the shards (which serve a caller's calls in submission order) answer it with
  those pushes applied. With ``prefetch`` the next fetch is requested one step early instead
  (still behind the pushes already taken).
- settling: every push's answer is accounted (applied at version ``v``: staleness ``v`` minus
  the version fetched; ``-1``: a duplicate, rejected; a dead shard: a failure), with at most
  ``max_in_flight`` pushes outstanding per shard.

The shards are reached through a :class:`Transport`: Ray actors in a worker actor
(``cluster.worker.RayTransport``), plain :class:`cluster.ps.ParameterShard` objects in
:class:`InProcess` (tests).
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from torch import Tensor

from cluster.config import TrainConfig
from cluster.push import PushStrategy
from cluster.sharding import ShardLayout, pack
from models.rbm.dense import RBMBase

T = TypeVar("T")
PHASES = ("fetch", "input", "compute", "push", "wait")
FETCH_ATTEMPTS = 60  # x 0.5 s: how long a fetch waits for a restarting shard


class Transport(Protocol):
    """How a replica reaches its shards."""

    lost: type[BaseException] | tuple[type[BaseException], ...]
    """What :meth:`get` raises when the actor died or is restarting."""

    def resolve(self, shard: Any) -> Any:
        """The shard itself from what names it (a Ray actor's name, or the object)."""

    def call(self, actor: Any, method: str, *args: Any) -> Any:
        """Start ``actor.method(*args)``; returns a handle."""

    def get(self, handles: list) -> list:
        """The results of ``handles`` (blocking)."""

    def ready(self, handles: list, n: int | None = None) -> list:
        """The handles done now (``n`` None), or the first ``n`` done (blocking)."""

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on the sender thread."""


class ActorLost(RuntimeError):
    """An in-process shard is never lost; the type exists so :class:`InProcess` has a ``lost``."""


class _Done:
    """The handle of a call that already ran (unique per call, like an ObjectRef)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class InProcess:
    """A transport to plain objects in this process: every call runs at once, in order, and
    passes copies as a message would (a shard answers with views of its own arrays, which Ray
    serialises when it answers; kept as views, a later push would change an answer already
    given)."""

    lost = ActorLost

    def resolve(self, shard: Any) -> Any:
        return shard

    def call(self, actor: Any, method: str, *args: Any) -> _Done:
        return _Done(copy.deepcopy(getattr(actor, method)(*copy.deepcopy(args))))

    def get(self, handles: list) -> list:
        return [h.value for h in handles]

    def ready(self, handles: list, n: int | None = None) -> list:
        return list(handles) if n is None else list(handles)[:n]

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future


class PhaseClock:
    """Seconds spent per phase of a chunk: waiting for parameters, preparing inputs, computing
    updates, handing pushes over, waiting for pushes in flight."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t


@dataclass
class PushStats:
    """How a chunk's pushes were answered."""

    pushes: int = 0
    rejected: int = 0
    failures: int = 0
    staleness: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        stale = self.staleness
        return {"pushes": self.pushes, "pushes_rejected": self.rejected,
                "push_failures": self.failures,
                "staleness_mean": float(np.mean(stale)) if stale else 0.0,
                "staleness_max": int(max(stale)) if stale else 0}


class Downpour:
    """One replica's side of the Downpour protocol (see the module docstring).

    Parameters
    ----------
    index : the replica (the ``worker`` of every push, for the shards' duplicate check).
    shards : the shards, or what names them (:meth:`Transport.resolve`).
    layout : how the stage's parameters are split over the shards.
    strategy : what a push carries (:func:`cluster.push.push_strategy`).
    transport : Ray or in-process.
    train : periods (``n_fetch``, ``n_push``), ``prefetch``, ``max_in_flight``,
        ``transfer_dtype``.
    """

    def __init__(self, index: int, shards: Sequence, layout: ShardLayout,
                 strategy: PushStrategy, transport: Transport, train: TrainConfig) -> None:
        self.index, self.layout = index, layout
        self.shards = [transport.resolve(s) for s in shards]
        self.strategy, self.transport = strategy, transport
        self.n_fetch, self.n_push, self.prefetch = train.n_fetch, train.n_push, train.prefetch
        self.max_in_flight, self.dtype = train.max_in_flight, train.transfer_dtype
        self._fetch_version: list[int] = []  # the version of each shard's last fetch
        self._sending: collections.deque = collections.deque()  # sender futures, oldest first
        self._pending: dict = {}  # push handle -> (shard, version fetched)
        self.begin(0)
        self.reset()

    # ------------------------------------------------------------------ chunk life
    def reset(self) -> None:
        """Forget the replica's position in the protocol (after a seek: fetch first)."""
        self._since_fetch: int | None = None  # steps since the last fetch
        self._prefetched: tuple[list, object] | None = None  # (handles, strategy mark)
        self._reply: concurrent.futures.Future | None = None  # a push that brings params back
        self._n_acc = 0
        self.strategy.reset()

    def begin(self, seq: int) -> None:
        """Start a chunk whose pushes are numbered ``seq, seq + 1, ...``."""
        self.seq = seq
        self.stats = PushStats()
        self.clock = PhaseClock()

    def finish(self, params: Mapping[str, Tensor]) -> dict:
        """Push what is left and wait until every push is answered (so a chunk's pushes are all
        applied or all accounted as failed); returns the chunk's push figures."""
        if self._n_acc:
            self.push(params)
        with self.clock("wait"):
            self._collect(block=True)
            self._settle(list(self._pending))
        return {"seq_end": self.seq, **self.stats.summary(),
                **{f"seconds_{k}": v for k, v in self.clock.seconds.items()}}

    # ------------------------------------------------------------------ fetch
    @property
    def fetch_due(self) -> bool:
        """Whether the next step starts with a fetch."""
        return self._since_fetch is None or self._since_fetch >= self.n_fetch

    def fetch(self, params: dict[str, Tensor], while_waiting: Callable[[], T]) -> T:
        """Load every shard's current slices into ``params``; ``while_waiting()`` runs once the
        request is on its way, before blocking on the answer. Returns its result."""
        handles, mark = self._prefetched or (None, self.strategy.mark())
        reply, self._prefetched, self._reply = self._reply, None, None
        if handles is None and reply is None:
            handles = self._queued_request()
        prepared = while_waiting()
        if reply is not None:  # the last push asked for the parameters: one call, not two
            handles = [h for h, _, _ in reply.result()]
        for attempt in range(FETCH_ATTEMPTS):
            try:
                results = self.transport.get(handles or self._queued_request())
                break
            except self.transport.lost:
                if attempt == FETCH_ATTEMPTS - 1:
                    raise
                handles, mark, reply = None, self.strategy.mark(), None
                time.sleep(0.5)
        if reply is not None:  # (version the push was applied at, fetch answer)
            results = [r[1] for r in results]
        self._fetch_version = [r[0] for r in results]
        self.strategy.receive(params, self.layout, [r[1] for r in results], mark)
        self._since_fetch = 0
        return prepared

    def prefetch_if_due(self) -> None:
        """With ``prefetch``: request the next fetch one step early, so it travels while this
        step computes."""
        if (self.prefetch and self._prefetched is None
                and self._since_fetch + 1 >= self.n_fetch):
            self._prefetched = (self._queued_request(), self.strategy.mark())

    def _queued_request(self) -> list:
        """A fetch submitted after every push already taken: the shards serve one caller's calls
        in submission order, so the answer holds those pushes, which is what the strategy's mark
        (taken when the push was) assumes. Requested while a push is still on the sender thread,
        a fetch could overtake it and a ``"delta"`` replica would undo that push's change."""
        concurrent.futures.wait(self._sending)
        return self._request()

    def _request(self) -> list:
        """One fetch call per shard, in the transfer dtype."""
        return [self.transport.call(s, "fetch", self.dtype) for s in self.shards]

    # ------------------------------------------------------------------ push
    def step(self, rbm: RBMBase, update: dict[str, Tensor]) -> None:
        """Account one step's update; push when ``n_push`` steps have accumulated."""
        self.strategy.add(rbm, update)
        self._n_acc += 1
        self._since_fetch += 1
        if self._n_acc >= self.n_push:
            self.push(rbm.params)

    def push(self, params: Mapping[str, Tensor]) -> None:
        """Hand the accumulated push to the sender thread, account the pushes already answered,
        and wait for the oldest while more than ``max_in_flight`` per shard are outstanding."""
        with self.clock("push"):
            reply = not self.prefetch and self._since_fetch >= self.n_fetch
            future = self.transport.submit(self._send, self.seq, self.strategy.take(params),
                                           list(self._fetch_version), reply)
            self._sending.append(future)
            if reply:
                self._reply = future
            self.seq += 1
            self.stats.pushes += 1
            self._n_acc = 0
            self._collect(block=False)
            if self._pending:
                self._settle(self.transport.ready(list(self._pending)))
        limit = self.max_in_flight * len(self.shards)
        if len(self._pending) + len(self._sending) * len(self.shards) > limit:
            with self.clock("wait"):
                self._collect(block=True)
                n = max(len(self._pending) - limit, 0)
                self._settle(self.transport.ready(list(self._pending), n))

    def _send(self, seq: int, update: Mapping[str, Tensor], fetched: Sequence[int],
              reply: bool) -> list[tuple]:
        """(sender thread) Push ``update`` as ``seq`` to every shard, asking for the parameters
        back when ``reply``; returns ``(handle, shard, version fetched)`` per shard."""
        parts = self.layout.split_all(update)
        answer = self.dtype if reply else None
        return [(self.transport.call(shard, "push", self.index, seq, pack(parts[j], self.dtype),
                                     answer), j, fetched[j])
                for j, shard in enumerate(self.shards)]

    # ------------------------------------------------------------------ settle
    def _collect(self, block: bool) -> None:
        """Move finished sends' handles into the pending set (all of them when ``block``)."""
        while self._sending and (block or self._sending[0].done()):
            for handle, j, fetched in self._sending.popleft().result():
                self._pending[handle] = (j, fetched)

    def _settle(self, handles: list) -> None:
        """Account answered pushes: staleness, duplicates rejected, pushes lost to a dead
        shard."""
        for handle in handles:
            _, fetched = self._pending.pop(handle)
            try:
                [version] = self.transport.get([handle])
            except self.transport.lost:
                self.stats.failures += 1
                continue
            if isinstance(version, tuple):  # a push that also returned the parameters
                version = version[0]
            if version < 0:
                self.stats.rejected += 1
            else:
                self.stats.staleness.append(version - fetched)
