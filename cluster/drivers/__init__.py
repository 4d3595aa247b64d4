"""The two schedules a stage runs under (:mod:`cluster.trainer` starts the stage's actors, picks
one, and gathers the parameters after it).

- :class:`~cluster.drivers.sync.SyncDriver` (reproducible): fixed-order synchronous steps,
  pipelined through ObjectRefs; any actor failure rolls every actor back to the last checkpoint.
- :class:`~cluster.drivers.async_.AsyncDriver` (Downpour SGD, Dean et al. 2012): chunks per
  worker taken in completion order; a dead worker replays its chunk.

A driver receives everything it uses in a :class:`~cluster.drivers.context.StageContext` (the
stage's actors, where it starts, the checkpoint schedule and writer, the fault injector, the log,
progress bar and liveness watch); it never calls back into the Trainer.
"""

from cluster.drivers.async_ import AsyncDriver
from cluster.drivers.context import CheckpointSchedule, StageCheckpointer, StageContext
from cluster.drivers.sync import SyncDriver


def make_driver(mode: str, context: StageContext) -> SyncDriver | AsyncDriver:
    """The driver of ``train.mode`` (``"sync"`` or ``"async"``) for one stage."""
    return SyncDriver(context) if mode == "sync" else AsyncDriver(context)


__all__ = ["AsyncDriver", "CheckpointSchedule", "StageCheckpointer", "StageContext",
           "SyncDriver", "make_driver"]
