"""Simulated faults (``sim.kill_worker``, ``sim.kill_shard``): ``ray.kill`` one actor of a stage
once the global step reaches the configured step, once per training process (a resumed run
injects it again), so the recovery paths of the
drivers (sync rollback, async replay, shard restore) run for real on a laptop.

The drivers call :meth:`FaultInjector.at_step` at every step they reach; a run without injected
faults gets :data:`NO_FAULTS`, which does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import ray

from cluster.config import SimConfig
from cluster.stage import StageActors


class FaultInjector:
    """Kills worker ``sim.kill_worker`` at global step ``sim.kill_worker_at_step`` and shard
    ``sim.kill_shard`` at ``sim.kill_shard_at_step`` (each once per process, -1 = never); Ray
    restarts them (``max_restarts``), a shard from the last checkpoint. :meth:`missed` names
    the faults a run ended without reaching.

    Parameters
    ----------
    sim : the job's ``sim`` section.
    log : where the "injected fault" event line goes.
    """

    def __init__(self, sim: SimConfig, log: Callable[[str], None]) -> None:
        self.faults = (
            ("worker", sim.kill_worker, sim.kill_worker_at_step, "Ray restarts it"),
            ("shard", sim.kill_shard, sim.kill_shard_at_step,
             "Ray restarts it from the last checkpoint"),
        )
        self.log = log
        self.killed: set[str] = set()

    def at_step(self, actors: StageActors, step: int) -> None:
        """Kill every configured actor whose step has come and that was not killed yet."""
        for kind, index, at_step, how in self.faults:
            if kind in self.killed or index < 0 or not 0 <= at_step <= step:
                continue
            self.killed.add(kind)
            handles = actors.workers if kind == "worker" else actors.shards
            ray.kill(handles[index], no_restart=False)
            self.log(f"stage {actors.stage} step {step}: injected fault: killed {kind} "
                     f"{index} ({how})")

    def missed(self) -> list[str]:
        """One line per configured fault never injected: its step was never reached (a step at
        or past the stage's last, say), so the run did not test what it was asked to."""
        return [f"injected fault never reached: sim.kill_{kind}_at_step={at_step} is past "
                f"every step this run trained; {kind} {index} was not killed"
                for kind, index, at_step, _ in self.faults
                if index >= 0 and at_step >= 0 and kind not in self.killed]


class NoFaults:
    """A run without injected faults."""

    def at_step(self, actors: StageActors, step: int) -> None:
        """Nothing to inject."""

    def missed(self) -> list[str]:
        """Nothing was asked for."""
        return []


NO_FAULTS = NoFaults()


def fault_injector(sim: SimConfig, log: Callable[[str], None]) -> FaultInjector | NoFaults:
    """The run's injector: :data:`NO_FAULTS` unless ``sim`` asks for a kill."""
    if sim.kill_worker < 0 and sim.kill_shard < 0:
        return NO_FAULTS
    return FaultInjector(sim, log)


__all__ = ["FaultInjector", "NO_FAULTS", "NoFaults", "fault_injector"]
