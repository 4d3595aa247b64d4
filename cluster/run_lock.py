"""One ``catneuron train`` at a time in a run folder.

Two trainings writing into one folder interleave their metrics and events, restore each other's
checkpoints and leave whichever ``model.pt`` was written last. A training holds an exclusive
``flock`` on ``RUN/train.lock`` while it runs; a second one (a fresh run or a ``--resume``) is
refused at once. The kernel drops the lock when the process ends, however it ends, so a killed
run never leaves the folder locked. A run folder in an object store (``s3://``) has no such
lock: the store offers none.
"""

from __future__ import annotations

import fcntl
import os

from pipeline import storage

LOCK = "train.lock"


class RunLock:
    """The lock on a local run folder; :meth:`release` (or the process's end) frees it."""

    def __init__(self, run_dir: str) -> None:
        self._fd: int | None = None
        if not storage.is_local(run_dir):
            return
        path = storage.local_path(run_dir) / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FileExistsError(f"{run_dir} is being trained by another catneuron train "
                                  f"(pid {holder}): wait for it to end, or choose another "
                                  "--run-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
