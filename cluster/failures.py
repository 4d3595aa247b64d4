"""Why a training run stops before its last step, as one line a user can act on.

The trainer raises these; ``catneuron train`` prints the message alone (no traceback) and exits
1 (:mod:`jobs.errors`). Each message names the stage, the step, what is missing and the setting
to change.
"""

from __future__ import annotations


class TrainingFailed(RuntimeError):
    """A run that cannot go on; the message is the whole story, for the user."""


class PlacementTimeout(TrainingFailed):
    """An actor the schedule cannot go on without (a parameter-server shard; in the synchronous
    mode any worker; in the asynchronous mode the last worker) stayed unplaced for longer than
    ``train.placement_timeout_s``: typically a node was lost and the others lack the resources
    it held."""


class StartFailed(TrainingFailed):
    """An actor's constructor raised: Ray does not restart it, so waiting for it is waiting for
    ever. The message is the error's last line (its type and text)."""


def last_line(error: BaseException) -> str:
    """The last non-empty line of an error's text (a remote traceback's ``Type: message``)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


class CheckpointUnwritable(TrainingFailed):
    """A checkpoint (a shard's file, its meta, the run's logs) could not be written: the run
    folder's disk or object store refused it, or stopped answering."""


class Diverged(TrainingFailed):
    """The parameters became NaN or infinite (a parameter-server shard's check)."""


def diverged_cause(exc: BaseException) -> FloatingPointError | None:
    """The FloatingPointError a (possibly Ray-wrapped, possibly nested) error comes from.

    Ray re-raises a remote task's error as ``RayTaskError`` whose ``cause`` is the original
    error; a task that failed because an argument's task failed nests them.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(exc, FloatingPointError) and cause is None:
            return exc
        exc = cause if cause is not None else exc.__cause__
    return None


#: The setting a diverging run lowers (a shard's and a worker's updater both read it).
LEARNING_RATE = "update.learning_rate"


def diverged_message(stage: int, step: int, error: FloatingPointError) -> str:
    """One line: where the run diverged and what to lower. A shard's message names the
    setting itself; a worker's (its RBM's own check) names the bare ``learning_rate``, so the
    config key is added then."""
    reason = str(error).strip().splitlines()[-1] if str(error).strip() else "NaN/inf parameters"
    if LEARNING_RATE not in reason:
        reason = f"{reason.rstrip('.')}: lower {LEARNING_RATE}"
    return f"stage {stage} diverged at step {step}: {reason}"
