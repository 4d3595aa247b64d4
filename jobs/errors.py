"""One error path for every ``catneuron`` command: what a failure prints and its exit status.

Every job module's ``main(argv) -> int`` is wrapped by :func:`command` (or calls
:func:`run_main`), so that whatever goes wrong reaches the user the same way, as one line on
stderr that says what to do next, never a traceback:

====== ===================================================================================
status meaning
====== ===================================================================================
0      success (also ``--help``)
1      the job ran and failed: training diverged or lost an actor it needs
       (:class:`cluster.failures.TrainingFailed`), a demo step failed, a Ray job failed
2      a usage error the user fixes, found before anything is lost: bad arguments (the
       parser's :class:`ArgumentParser` raises :class:`UserError`), a bad config, dataset,
       run folder or storage location (:class:`UserError` and :data:`USER_ERRORS`); a disk
       full or read-only (:data:`NO_ROOM`), wherever a write (stdout too) found it
130    Ctrl-C (``KeyboardInterrupt``): the line says how to continue where the job can resume
====== ===================================================================================

A divergence is status 1, not 2: the arguments were valid and the run did work (its
checkpoints are kept); the line names the stage, the step and the setting to lower.

Lines read ``PROG: error: MESSAGE`` (statuses 1 and 2) and ``PROG: MESSAGE`` for an
interruption. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator

INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, the status of a Unix tool whose reader went away
#: A write the storage refused for want of room: the user's to fix, wherever it came from
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class UserError(Exception):
    """A problem the user fixes; the message is one line naming the fix, printed as written
    (a failed demo step adds the end of its log). ``status`` is the exit status (2: a usage
    error; a job module may raise it with 1 for a job that ran and failed)."""

    status = 2

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class Interrupted(UserError):
    """Ctrl-C where the job knows how it continues: the message says so (exit 130)."""

    status = INTERRUPTED


#: Errors of the lower layers (``models/``, ``pipeline/``, ``cluster/`` cannot import ``jobs/``)
#: that are the user's to fix, as ``module:Class``: exit status 2, one line. Looked up only in
#: modules already imported (an error can only come from a module that was), so listing them
#: here imports nothing (``pipeline.pool`` would import Ray).
USER_ERRORS = (
    "models.typed_config:ConfigError",      # unknown key, wrong type, impossible geometry
    "models.state_file:UnsafeStateFile",    # a model or checkpoint that would run code
    "models.state_file:DamagedStateFile",   # one cut short
    "pipeline.storage:LocationError",       # a bucket missing or refusing writes, a '..'
    "pipeline.shards:ManifestError",        # a dataset manifest that cannot be used
    "pipeline.ingest:OptionsMismatch",      # a dataset made with other options
    "pipeline.ingest:ForeignFiles",         # an output folder holding files not ours
    "pipeline.ingest:DatasetBusy",          # an output folder another ingest writes into
    "pipeline.probe:ProbeError",            # an unreadable probe folder
    "pipeline.pool:RayUnreachable",         # RAY_ADDRESS that does not answer
    "cluster.submission:ClusterUnreachable",  # no Ray job server answers
)
#: Errors of a job that ran and failed (exit status 1).
JOB_FAILURES = ("cluster.failures:TrainingFailed",)


def _loaded(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The classes of ``names`` whose modules are imported."""
    found = []
    for name in names:
        module, cls = name.split(":")
        if module in sys.modules:
            found.append(getattr(sys.modules[module], cls))
    return tuple(found)


def exit_status(exc: BaseException) -> int | None:
    """The exit status of an error the user should see as one line, or None (a bug)."""
    if isinstance(exc, UserError):
        return exc.status
    if isinstance(exc, _loaded(JOB_FAILURES)):
        return 1
    if isinstance(exc, _loaded(USER_ERRORS)):
        return 2
    return None


def one_line(message: str) -> str:
    """A message on one line (its lines joined by '; ')."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors raise :class:`UserError` (one line, exit
    2, no usage block) instead of printing and exiting; ``--help`` still prints and exits 0
    (``SystemExit``, which :func:`run_main` turns into the status). Subparsers are built with
    the same class."""

    def error(self, message: str):
        raise UserError(f"{message} (see '{self.prog} --help')")


def location(text: str) -> str:
    """An ``argparse`` type for a folder or file option: refuses an empty value (``--out ""``,
    an unset shell variable), which would otherwise name the current folder and write there."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?): give a "
                                         "folder or file")
    return text


@contextlib.contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Inside the block, an error of one of ``kinds`` (e.g. ``FileNotFoundError`` while reading
    the user's config) is the user's to fix: re-raised as :class:`UserError`."""
    try:
        yield
    except kinds as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(one_line(str(exc))) from exc


def run_main(prog: str, body: Callable[[list[str] | None], int | None], argv: list[str] | None,
             *, interrupted: str = "interrupted") -> int:
    """``body(argv)``'s exit status, with every failure the user should see printed as one line
    (module docstring). ``interrupted`` is the line Ctrl-C prints when ``body`` does not raise
    an :class:`Interrupted` of its own."""
    try:
        try:
            status = int(body(argv) or 0)
        except SystemExit as exc:  # argparse's --help (0), or a sys.exit deep inside
            if isinstance(exc.code, str):
                print(f"{prog}: error: {exc.code}", file=sys.stderr)
                return 1
            status = int(exc.code or 0)
        sys.stdout.flush()  # output a full disk refuses fails here, not at exit (status 120)
        return status
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # the output's reader went away (`| head`): stop quietly
        _stdout_to_devnull()
        return BROKEN_PIPE
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            try:
                sys.stdout.flush()
            except OSError:  # stdout itself is full
                _stdout_to_devnull()
            return _no_room(prog, exc)
        status = exit_status(exc)
        if status is None:
            raise
        text = str(exc) if isinstance(exc, UserError) else one_line(str(exc))
        prefix = "" if status == INTERRUPTED else "error: "
        print(f"{prog}: {prefix}{text}", file=sys.stderr)
        return status


def _stdout_to_devnull() -> None:
    """The rest of stdout goes nowhere, so the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _no_room(prog: str, exc: OSError) -> int:
    """A full disk (or quota, or read-only file system): one line naming the file, status 2."""
    where = f": {exc.filename}" if exc.filename else ""
    print(f"{prog}: error: {exc.strerror}{where}; free some space, or write elsewhere, and run "
          "the same command again", file=sys.stderr)
    return 2


def command(prog: str, *, interrupted: str = "interrupted"
            ) -> Callable[[Callable[[list[str] | None], int | None]],
                          Callable[[list[str] | None], int]]:
    """Decorator for a job module's ``main(argv)``: :func:`run_main` around it."""
    def wrap(body: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
        @functools.wraps(body)
        def main(argv: list[str] | None = None) -> int:
            return run_main(prog, body, argv, interrupted=interrupted)
        return main
    return wrap
