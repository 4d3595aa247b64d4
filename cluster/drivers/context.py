"""What a stage's driver is given: the actors, the checkpoint it starts from, when and how to
checkpoint, the fault injector, and where it reports (log, progress bar, liveness watch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ray
from tqdm import tqdm

from cluster.checkpoint import prune, step_folder, write_meta
from cluster.config import TrainConfig
from cluster.failures import CheckpointUnwritable, last_line
from cluster.fault_injection import FaultInjector, NoFaults
from cluster.liveness import StageWatch
from cluster.runlog import RunLogger
from cluster.stage import StageActors, get_from_shards
from pipeline import storage

POLL_S = 0.5  # seconds between the drivers' liveness polls while they wait


@dataclass(frozen=True)
class CheckpointSchedule:
    """A checkpoint every ``every`` global steps (0 = only the stage's last)."""

    every: int

    def due(self, before: int, after: int) -> bool:
        """Whether a checkpoint boundary lies in (before, after]."""
        return bool(self.every) and after // self.every > before // self.every


@dataclass
class StageCheckpointer:
    """Writes a checkpoint of one stage (:mod:`cluster.checkpoint`): every shard writes its own
    file, then ``meta.pt``, then ``LATEST`` is switched (atomic)."""

    actors: StageActors
    config_text: str  # the resolved job config, stored in every checkpoint
    log: RunLogger
    keep: int = 0  # train.keep_checkpoints: the newest kept (0: all)
    arithmetic: str = ""  # the stage's processes' kernels, stored in every checkpoint

    def save(self, step: int, *, positions, seqs, wsteps, local_states=None,
             watch: StageWatch | None = None) -> dict:
        """The checkpoint at global step ``step``, with every worker's data position, next push
        sequence number, step counter and local state; returns its meta. ``watch``: a shard
        lost during the save is waited for (:func:`cluster.stage.get_from_shards`, the
        asynchronous schedule); None: it raises ``RayActorError`` (the synchronous schedule
        rolls back)."""
        actors = self.actors
        folder = step_folder(actors.stage_dir, step)

        def saves() -> list:
            return [s.save.remote(storage.join(folder, f"shard{j}.pt"))
                    for j, s in enumerate(actors.shards)]

        try:  # OSError: also a shard's, re-raised by Ray as RayTaskError(OSError)
            storage.makedirs(folder)
            if watch is None:
                ray.get(saves())
            else:
                get_from_shards(watch, f"stage {actors.stage} step {step}: checkpoint", saves)
            meta = write_meta(folder, stage=actors.stage, step=step, config_text=self.config_text,
                              layout=actors.layout, positions=positions, seqs=seqs,
                              worker_steps=wsteps, local_states=local_states,
                              arithmetic=self.arithmetic)
            self.log.event(f"stage {actors.stage}: checkpoint {folder}")
            self._prune()
            self.log.sync()
        except OSError as exc:
            raise CheckpointUnwritable(
                f"stage {actors.stage} step {step}: the checkpoint {folder} could not be "
                f"written ({last_line(exc)[:200]}); once it can, continue the run with "
                "--resume") from None
        return meta

    def _prune(self) -> None:
        """Delete the stage's checkpoints older than the newest ``keep``
        (:func:`cluster.checkpoint.prune`). The new checkpoint is already published, so a
        folder that cannot be deleted is an event line, not a failure: the run goes on and the
        old folder stays."""
        actors = self.actors
        try:
            prune(actors.stage_dir, self.keep, protect=actors.checkpoint)
        except OSError as exc:
            self.log.event(f"stage {actors.stage}: old checkpoints in {actors.stage_dir} could "
                           f"not be deleted ({last_line(exc)[:200]}); they stay, the run goes on")


@dataclass
class StageContext:
    """Everything a driver uses for one stage.

    actors : the stage's shards and workers.
    meta : the checkpoint the stage starts from (step, positions, seqs, worker steps, states).
    train : the job's ``train`` section (steps, log interval, push period, ...).
    schedule, checkpointer : when to checkpoint, and the writer.
    faults : the simulated-fault injector, called at every step reached.
    log, bar, watch : the run's log, the stage's progress bar, the actors' liveness watch.
    """

    actors: StageActors
    meta: Mapping
    train: TrainConfig
    schedule: CheckpointSchedule
    checkpointer: StageCheckpointer
    faults: FaultInjector | NoFaults
    log: RunLogger
    bar: tqdm
    watch: StageWatch
