"""Named points where a test can freeze an ingest, to kill it at an exact moment.

A crash test must kill a process between two particular writes (a shard published but no
manifest yet; a manifest written to its temporary name but not yet renamed). Timing cannot hit
such a window reliably, so the writers call :func:`pause_point` there. With the environment
variable ``CATNEURON_PAUSE_AT=NAME`` (or ``NAME@N``: the N-th time, 1-based) the process stops
itself with ``SIGSTOP`` when it reaches that point; the test sees it stopped
(``os.waitpid(pid, os.WUNTRACED)``) and sends ``SIGKILL``. Unset (always, outside tests), a
pause point costs one dictionary lookup.

Points: ``shard:before-publish`` (a shard written under its temporary name),
``shard:published`` (a shard under its final name), ``write:NAME`` (``NAME`` written to its
temporary name by :func:`pipeline.storage.write_bytes`, before the rename).
"""

from __future__ import annotations

import os
import signal

ENV = "CATNEURON_PAUSE_AT"
_seen: dict[str, int] = {}


def pause_point(name: str) -> None:
    """Stop this process (SIGSTOP) if ``CATNEURON_PAUSE_AT`` names this point and occurrence."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGSTOP)
