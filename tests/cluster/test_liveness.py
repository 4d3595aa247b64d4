"""``cluster.liveness`` without Ray: a fake probe and a fake clock, exact answers."""

from __future__ import annotations

import pytest

import cluster.liveness as liveness
from cluster.failures import PlacementTimeout
from cluster.liveness import Liveness, StageWatch, shard_name, worker_name


class FakeProbe:
    """Actors are names; ``up`` says which answer; a ping of a down actor stays pending."""

    def __init__(self, free: dict) -> None:
        self.up: set[str] = set()
        self.pending_forever: set[str] = set()
        self.free_now = free
        self.sent: list[str] = []

    def send(self, actor):
        self.sent.append(actor)
        return actor

    def state(self, handle):
        if handle in self.up:
            return True
        return None if handle in self.pending_forever else False

    def free(self):
        return self.free_now


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _watch(every_worker=False, timeout_s=60.0):
    probe, clock, log = FakeProbe({"CPU": 0.4}), Clock(), []
    live = Liveness(probe, grace_s=5.0, period_s=1.0, remind_s=30.0, clock=clock)
    for j in range(2):
        live.add(shard_name(j), shard_name(j), {"CPU": 0.01}, watched=True)
    for k in range(2):
        live.add(worker_name(k), worker_name(k), {"CPU": 0.5})
    probe.up = set(live.members)
    watch = StageWatch(live, 2, 2, timeout_s, every_worker=every_worker, log=log.append)
    return watch, probe, clock, log


def _tick(watch, clock, seconds, where="stage 0 step 8"):
    back = []
    for _ in range(int(seconds)):
        clock.t += 1.0
        back += watch.poll(where)
    return back


def test_a_lost_worker_is_reported_with_what_it_waits_for_and_taken_back():
    watch, probe, clock, log = _watch()
    _tick(watch, clock, 3)
    assert log == [] and probe.sent.count("worker 0") == 0  # busy workers are never pinged
    probe.up.discard("worker 1")
    watch.lost_worker(1)
    assert watch.running_workers() == [0]
    _tick(watch, clock, 4)
    assert log == []  # within the grace
    _tick(watch, clock, 2)
    assert log == ["stage 0 step 8: worker 1 waits for 0.5 CPU (0.4 CPU free in the cluster); "
                   "1 of 2 workers running"]
    _tick(watch, clock, 20)
    assert len(log) == 1  # reminded only every remind_s
    _tick(watch, clock, 10)
    assert len(log) == 2
    probe.up.add("worker 1")
    assert _tick(watch, clock, 2) == [1]
    assert log[-1] == "stage 0 step 8: worker 1 is running again; 2 of 2 workers running"
    assert watch.running_workers() == [0, 1]


def test_async_fails_only_for_a_shard_or_the_last_worker_past_the_limit():
    watch, probe, clock, log = _watch(timeout_s=60.0)
    probe.up.discard("worker 1")
    watch.lost_worker(1)
    _tick(watch, clock, 200)  # one worker missing for long: async goes on
    probe.pending_forever.add(shard_name(1))
    probe.up.discard(shard_name(1))
    _tick(watch, clock, 55)  # its ping pends: down since it was sent, a second ago at most
    with pytest.raises(PlacementTimeout) as err:
        _tick(watch, clock, 10)
    message = str(err.value)  # 0.4 CPU free >= the shard's 0.01: Ray is (re)starting it
    assert message.startswith("stage 0 step 8: parameter-server shard 1 does not answer yet")
    assert "train.placement_timeout_s=60" in message and "\n" not in message
    assert "1 of 2 workers running" in message


def test_the_message_names_the_missing_resources():
    watch, probe, clock, _ = _watch(timeout_s=10.0)
    probe.free_now = {}
    probe.up.discard(shard_name(0))
    with pytest.raises(PlacementTimeout) as err:
        _tick(watch, clock, 30)
    assert str(err.value).startswith(
        "stage 0 step 8: parameter-server shard 0 waits for 0.01 CPU (none free in the "
        "cluster), for 11 s (train.placement_timeout_s=10)")


def test_losing_every_worker_fails_async_and_one_worker_fails_sync():
    watch, probe, clock, _ = _watch(timeout_s=30.0)
    for k in (0, 1):
        probe.up.discard(worker_name(k))
        watch.lost_worker(k)
    with pytest.raises(PlacementTimeout, match="worker 0 waits for 0.5 CPU"):
        _tick(watch, clock, 40)
    watch, probe, clock, _ = _watch(every_worker=True, timeout_s=30.0)
    probe.up.discard(worker_name(1))
    watch.lost_worker(1)
    with pytest.raises(PlacementTimeout, match="worker 1 waits for 0.5 CPU"):
        _tick(watch, clock, 40)


def test_await_running_returns_once_all_answer(monkeypatch):
    watch, probe, clock, log = _watch()
    probe.free_now = {"CPU": 2.0}
    calls = []

    def sleep_and_recover(_):
        calls.append(clock.t)
        clock.t += 1.0
        if len(calls) == 8:
            probe.up.add(worker_name(0))

    probe.up.discard(worker_name(0))
    monkeypatch.setattr(liveness.time, "sleep", sleep_and_recover)
    watch.await_running("stage 0: starting its actors")
    assert len(calls) == 8
    assert [m for m in log if "worker 0" in m] == [
        "stage 0: starting its actors: worker 0 does not answer yet (5 s; Ray is starting it, "
        "0.5 CPU is free for it); 1 of 2 workers running"]


def test_async_starts_with_the_workers_that_can_run(monkeypatch):
    watch, probe, clock, log = _watch()
    probe.up.discard(worker_name(1))

    def sleep(_):
        clock.t += 1.0

    monkeypatch.setattr(liveness.time, "sleep", sleep)
    watch.await_start("stage 1: starting its actors")
    assert watch.running_workers() == [0] and 5 <= clock.t <= 8
    assert log == ["stage 1: starting its actors: worker 1 waits for 0.5 CPU (0.4 CPU free in "
                   "the cluster); 1 of 2 workers running"]
    sync, probe, clock, _ = _watch(every_worker=True, timeout_s=30.0)
    probe.up.discard(worker_name(1))
    monkeypatch.setattr(liveness.time, "sleep", lambda _: setattr(clock, "t", clock.t + 1.0))
    with pytest.raises(PlacementTimeout, match="worker 1 waits for 0.5 CPU"):
        sync.await_start("stage 1: starting its actors")


def test_a_wait_not_yet_reported_is_reported_when_the_stage_ends():
    watch, probe, clock, log = _watch()
    probe.up.discard(worker_name(1))
    watch.lost_worker(1)
    _tick(watch, clock, 2)  # within the grace: nothing said yet
    watch.report_unreported("stage 0 step 240: every step done")
    watch.report_unreported("stage 0 step 240: every step done")
    assert log == ["stage 0 step 240: every step done: worker 1 waits for 0.5 CPU (0.4 CPU free "
                   "in the cluster); 1 of 2 workers running"]


def test_waits_start_short_and_double_up_to_the_poll_period(monkeypatch):
    """A checkpoint waits for its shards a dozen times a stage: a shard that answers its ping
    at once is seen after milliseconds, not a whole poll period."""
    from itertools import islice

    assert list(islice(liveness.backoff(0.5), 10)) == [
        0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5, 0.5]
    watch, probe, clock, _ = _watch()
    slept = []
    monkeypatch.setattr(liveness.time, "sleep", slept.append)
    watch.await_running("stage 0 step 100: checkpoint", watch.shards)
    assert slept == [0.002]  # the ping sent by the first poll answered by the second
