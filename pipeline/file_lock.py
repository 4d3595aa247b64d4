"""One process at a time in a local folder: an exclusive ``flock`` on a lock file in it.

A job that writes a folder's files in several steps (a training run, a demo) holds the lock
while it runs, and a second one is refused at once (:class:`LockHeld`, with the holder's pid,
which the lock file holds). The kernel drops the lock when the process ends, however it ends,
so a killed job never leaves the folder locked; the file itself stays, unlocked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is its pid as the lock file gives it."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"held by pid {holder}")
        self.holder = holder


class FileLock:
    """The exclusive lock on the file ``path`` (created if need be), holding this process's pid;
    :meth:`release` (or the process's end) frees it. Raises :class:`LockHeld` at once when
    another process holds it."""

    def __init__(self, path: str | os.PathLike) -> None:
        fd = os.open(Path(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Free the lock (closing the descriptor drops the flock); a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
