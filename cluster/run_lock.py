"""One ``catneuron train`` at a time in a run folder.

Two trainings writing into one folder interleave their metrics and events, restore each other's
checkpoints and leave whichever ``model.pt`` was written last. A training holds an exclusive
``flock`` on ``RUN/train.lock`` while it runs; a second one (a fresh run or a ``--resume``) is
refused at once. The kernel drops the lock when the process ends, however it ends, so a killed
run never leaves the folder locked. A run folder in an object store (``s3://``) has no such
lock: the store offers none.
"""

from __future__ import annotations

from pipeline import storage
from pipeline.file_lock import FileLock, LockHeld

LOCK = "train.lock"


class RunLock:
    """The lock on a local run folder; :meth:`release` (or the process's end) frees it."""

    def __init__(self, run_dir: str) -> None:
        self._lock: FileLock | None = None
        if not storage.is_local(run_dir):
            return
        try:
            self._lock = FileLock(storage.local_path(run_dir) / LOCK)
        except LockHeld as held:
            raise FileExistsError(f"{run_dir} is being trained by another catneuron train "
                                  f"(pid {held.holder}): wait for it to end, or choose another "
                                  "--run-dir") from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
