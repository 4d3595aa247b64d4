"""Which of a stage's actors are running, which wait to be placed, and for what.

When a node is lost, Ray restarts its actors elsewhere (``max_restarts``), but only where their
resources fit; an actor that fits nowhere stays unplaced for as long as it takes, and a task sent
to it waits as long. The drivers never wait on such an actor blindly: :class:`Liveness` probes
the actors (a ``ping`` task each, at most one outstanding per actor) and says, within seconds,
which ones do not answer and what they wait for (``worker 1 waits for 0.5 CPU (0.48 CPU free in
the cluster); 1 of 2 workers running``), and which came back. The drivers decide what that means:
the asynchronous one goes on with the workers it has and takes a worker back when it answers
again; a shard (or, in the synchronous mode, any worker) that stays unplaced for longer than
``train.placement_timeout_s`` ends the run with :class:`cluster.failures.PlacementTimeout`.

Workers busy with a chunk are not probed (their ping would queue behind it): a worker is probed
from the moment the driver saw its work fail (:meth:`Liveness.lost`) until it answers. Shards
serve short calls, so they are probed all the time (:meth:`Liveness.watch`).

No Ray here: a :class:`Probe` sends the pings and reads the cluster's free resources
(:class:`RayProbe` in the trainer, a fake in tests).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.failures import StartFailed, last_line


class Probe(Protocol):
    """How :class:`Liveness` reaches the actors."""

    def send(self, actor: Any) -> Any:
        """Start a ping of ``actor``; returns a handle."""

    def state(self, handle: Any) -> bool | None:
        """True: answered; False: failed (the actor died or is restarting); None: pending.
        Raises :class:`cluster.failures.StartFailed` when the actor's constructor raised (it
        will never answer)."""

    def free(self) -> Mapping[str, float]:
        """Resources free in the cluster now (``{"CPU": 0.48, ...}``)."""


@dataclass
class Member:
    """One actor as :class:`Liveness` sees it."""

    name: str  # "worker 1", "parameter-server shard 0"
    actor: Any
    request: Mapping[str, float]  # what Ray needs to place it
    watched: bool = False  # probed all the time (shards), else only after a loss (workers)
    handle: Any = None  # the outstanding ping
    sent: float = 0.0
    answered: float = 0.0
    down_since: float | None = None  # not answering since then; None: running
    reported: float = -math.inf  # when its wait was last reported


def format_resources(resources: Mapping[str, float]) -> str:
    """``{"CPU": 0.5, "node2": 1}`` -> ``"0.5 CPU, 1 node2"``."""
    return ", ".join(f"{v:g} {k}" for k, v in resources.items() if v) or "nothing"


@dataclass
class Liveness:
    """Probes a stage's actors; see the module docstring.

    Parameters
    ----------
    probe : sends pings, reads free resources.
    grace_s : an actor not answering for this long is reported (and counted as not running).
    period_s : seconds between two pings of an actor that answers.
    remind_s : a wait is reported again after this long.
    clock : seconds, monotonic (``time.monotonic``; a fake clock in tests).
    """

    probe: Probe
    grace_s: float = 5.0
    period_s: float = 1.0
    remind_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    members: dict[str, Member] = field(default_factory=dict)

    def add(self, name: str, actor: Any, request: Mapping[str, float], *,
            watched: bool = False) -> None:
        """Know ``actor`` as ``name``; ``watched``: probe it all the time."""
        self.members[name] = Member(name, actor, dict(request), watched=watched)

    def lost(self, name: str) -> None:
        """The driver saw ``name``'s work fail: probe it until it answers."""
        m = self.members[name]
        if m.down_since is None:
            m.down_since = self.clock()
            m.handle = None

    def running(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that are not down."""
        return [n for n in names if self.members[n].down_since is None]

    def down_for(self, name: str) -> float:
        """Seconds ``name`` has not answered (0 when running)."""
        since = self.members[name].down_since
        return 0.0 if since is None else self.clock() - since

    def poll(self) -> tuple[list[str], list[str]]:
        """Probe; returns ``(names that came back, names whose wait is to be reported now)``."""
        now, back, waiting = self.clock(), [], []
        for m in self.members.values():
            if not (m.watched or m.down_since is not None):
                continue
            if m.handle is not None:
                try:
                    state = self.probe.state(m.handle)
                except StartFailed as exc:
                    raise StartFailed(f"{m.name} could not start: {exc}") from None
                if state is None:  # pending: not answering since it was sent, past the grace
                    if m.down_since is None and now - m.sent > self.grace_s:
                        m.down_since = m.sent
                else:
                    m.handle = None
                    if state and m.down_since is not None:
                        m.down_since, m.reported = None, -math.inf
                        back.append(m.name)
                    elif not state and m.down_since is None:
                        m.down_since = m.sent
                    m.answered = now if state else m.answered
            if m.handle is None and (m.down_since is not None
                                     or now - m.answered >= self.period_s):
                m.handle, m.sent = self.probe.send(m.actor), now
            if (m.down_since is not None and now - m.down_since >= self.grace_s
                    and now - m.reported >= self.remind_s):
                m.reported = now
                waiting.append(m.name)
        return back, waiting

    def describe(self, name: str) -> str:
        """What ``name`` waits for: resources the cluster lacks now, or its restart."""
        m = self.members[name]
        free = self.probe.free()
        short = {k: v for k, v in m.request.items() if free.get(k, 0.0) + 1e-9 < v}
        if short:
            have = format_resources({k: free.get(k, 0.0) for k in short}) if any(
                free.get(k, 0.0) for k in short) else "none"
            return f"{name} waits for {format_resources(m.request)} ({have} free in the cluster)"
        return (f"{name} does not answer yet ({self.down_for(name):.0f} s; Ray is starting it, "
                f"{format_resources(m.request)} is free for it)")


class RayProbe:
    """:class:`Probe` over Ray actors: ``actor.ping.remote()`` and ``ray.available_resources``."""

    def __init__(self) -> None:
        import ray

        self._ray = ray

    def send(self, actor: Any) -> Any:
        return actor.ping.remote()

    def state(self, handle: Any) -> bool | None:
        ray = self._ray
        ready, _ = ray.wait([handle], timeout=0)
        if not ready:
            return None
        try:
            ray.get(handle)
            return True
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise StartFailed(last_line(exc)) from None
            return False
        except ray.exceptions.RayError:
            return False

    def free(self) -> Mapping[str, float]:
        return self._ray.available_resources()



def backoff(longest_s: float, first_s: float = 0.002) -> Iterator[float]:
    """Waits between polls: ``first_s``, doubling up to ``longest_s``, then ``longest_s`` for
    ever. An actor that answers at once (a ping takes about a millisecond) is seen within a few
    milliseconds, not after a whole ``longest_s``: a checkpoint waits for its shards this way,
    a dozen times a stage."""
    wait = min(first_s, longest_s)
    while True:
        yield wait
        wait = min(2 * wait, longest_s)


def worker_name(k: int) -> str:
    return f"worker {k}"


def shard_name(j: int) -> str:
    return f"parameter-server shard {j}"


class StageWatch:
    """What the drivers do with a stage's :class:`Liveness`: report waits and returns in the
    run's log, wait for actors, and fail the run past ``timeout_s``.

    Parameters
    ----------
    live : the stage's actors, named by :func:`worker_name` and :func:`shard_name`.
    n_workers, n_shards : how many of each ``live`` holds.
    timeout_s : ``train.placement_timeout_s``.
    every_worker : the schedule needs every worker (synchronous); otherwise one is enough.
    log : where event lines go (the run's ``events.log``).
    """

    def __init__(self, live: Liveness, n_workers: int, n_shards: int, timeout_s: float, *,
                 every_worker: bool, log: Callable[[str], None]) -> None:
        self.live, self.timeout_s, self.every_worker, self.log = live, timeout_s, every_worker, log
        self.workers = [worker_name(k) for k in range(n_workers)]
        self.shards = [shard_name(j) for j in range(n_shards)]

    def running_workers(self) -> list[int]:
        """Indices of the workers not known to be down."""
        running = set(self.live.running(self.workers))
        return [k for k, name in enumerate(self.workers) if name in running]

    def is_running(self, k: int) -> bool:
        return self.live.members[self.workers[k]].down_since is None

    def lost_worker(self, k: int) -> None:
        self.live.lost(self.workers[k])

    def count(self) -> str:
        return f"{len(self.running_workers())} of {len(self.workers)} workers running"

    def poll(self, where: str, report_back: bool = True,
             needed: list[str] | None = None) -> list[int]:
        """Probe, log what changed; returns the workers that are running again.
        Raises PlacementTimeout when the schedule cannot go on (see :meth:`check_deadline`)."""
        back, waiting = self.live.poll()
        for name in waiting:
            self.log(f"{where}: {self.live.describe(name)}; {self.count()}")
        for name in back if report_back else ():
            self.log(f"{where}: {name} is running again; {self.count()}")
        self.check_deadline(where, needed)
        return [self.workers.index(n) for n in back if n in self.workers]

    def check_deadline(self, where: str, needed: list[str] | None = None) -> None:
        """PlacementTimeout when one of ``needed`` has been down for longer than ``timeout_s``;
        by default a shard, or (every worker needed) a worker, or (one is enough) the last
        worker."""
        if needed is None:
            needed = list(self.shards)
            if self.every_worker:
                needed += self.workers
            elif not self.running_workers():
                needed.append(min(self.workers, key=self.live.down_for))
        late = [n for n in needed if self.live.down_for(n) > self.timeout_s]
        if late:
            name = max(late, key=self.live.down_for)
            from cluster.failures import PlacementTimeout

            raise PlacementTimeout(
                f"{where}: {self.live.describe(name)}, for {self.live.down_for(name):.0f} s "
                f"(train.placement_timeout_s={self.timeout_s:g}); {self.count()}. Add a node "
                f"with those resources, then continue the run with --resume")

    def report_unreported(self, where: str) -> None:
        """Log what each down worker waits for, if it was not said yet (a stage can end within
        the grace after a loss)."""
        for name in self.workers:
            member = self.live.members[name]
            if member.down_since is not None and member.reported == -math.inf:
                member.reported = self.live.clock()
                self.log(f"{where}: {self.live.describe(name)}; {self.count()}")

    def await_running(self, where: str, names: list[str] | None = None,
                      poll_s: float = 0.5) -> None:
        """Probe ``names`` (default: every actor) until all answer, logging what they wait
        for; PlacementTimeout when one of them is down for longer than ``timeout_s``."""
        names = list(self.live.members) if names is None else list(names)
        for name in names:
            self.live.lost(name)
        for wait in backoff(poll_s):
            self.poll(where, report_back=False, needed=names)
            if len(self.live.running(names)) == len(names):
                return
            time.sleep(wait)

    def await_start(self, where: str, poll_s: float = 0.5) -> None:
        """A stage's start: every shard, and every worker (synchronous) or the workers that
        can run (asynchronous: once one answers, those still unplaced after the grace are left
        to the driver, which takes them when they answer)."""
        self.await_running(where, self.shards, poll_s)
        if self.every_worker:
            self.await_running(where, self.workers, poll_s)
            return
        for name in self.workers:
            self.live.lost(name)
        for wait in backoff(poll_s):
            self.poll(where, report_back=False)
            down = [n for n in self.workers if n not in self.live.running(self.workers)]
            if not down or (len(down) < len(self.workers) and all(
                    self.live.down_for(n) > self.live.grace_s for n in down)):
                return
            time.sleep(wait)
