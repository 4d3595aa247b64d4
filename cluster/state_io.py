"""State files (checkpoints, ``model.pt``) at a location every node reaches: a local path or a
URI such as ``s3://bucket/runs/x/model.pt`` (:mod:`pipeline.storage`).

The bytes are :mod:`models.state_file`'s (tensors and plain values, read back with
``torch.load(weights_only=True)``), so ``models/`` stays free of storage; the publishing is
:func:`pipeline.storage.write_bytes`'s (atomic on a disk and in an object store).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from models.stack import RBMStack
from models.state_file import DamagedStateFile, state_from_bytes, state_to_bytes
from pipeline import storage


def write_state(location: str | os.PathLike, obj: Any) -> bytes:
    """Publish ``obj`` (tensors and plain values; numpy arrays become tensors) at ``location``;
    the file's bytes."""
    data = state_to_bytes(obj)
    storage.write_bytes(location, data)
    return data


def read_state(location: str | os.PathLike) -> Any:
    """What :func:`write_state` published; ``models.state_file.UnsafeStateFile`` if the file
    names any code (nothing in it runs), FileNotFoundError if there is none."""
    return state_from_bytes(storage.read_bytes(location), where=str(location))


def read_trained_stack(location: str | os.PathLike, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[RBMStack, int]:
    """The stack of a run's ``model.pt`` (a path or a URI) and how many of its stages are
    trained (``stages_trained`` as ``catneuron train`` writes it; all when the file does not
    say)."""
    blob = read_state(location)
    try:
        stack = RBMStack.from_saved(blob, device=device, dtype=dtype)
    except DamagedStateFile as exc:  # the fields' fault: name the file
        raise DamagedStateFile(f"{location}: {exc}") from None
    check_finite(stack, location)
    trained = blob.get("stages_trained", stack.n_layers)
    if type(trained) is not int or not 0 <= trained <= stack.n_layers:
        raise DamagedStateFile(f"{location}: stages_trained is {trained!r}, not a count of its "
                               f"{stack.n_layers} stages: it was not used; copy the file again "
                               "from where it was written, or train again")
    return stack, trained


def check_finite(stack: RBMStack, location: str | os.PathLike) -> None:
    """:class:`models.state_file.DamagedStateFile` (one line) naming the first tensor of a stage
    that holds NaN or infinity: training stops a run that diverges, so such a file is damaged,
    and its units would put NaN into every figure and JSON file made from it."""
    for k, stage in enumerate(stack.state_dict()["rbms"]):
        for name, t in _tensors(stage):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise DamagedStateFile(
                    f"{location}: stage {k}'s {name} holds NaN or infinite values: it was not "
                    "used; copy the file again from where it was written, or train again")


def _tensors(obj: Any, prefix: str = ""):
    """(dotted name, tensor) of every tensor in nested dicts and lists."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}[{i}]")
