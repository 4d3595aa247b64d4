"""State files that hold data, never code: tensors and plain Python values only.

``torch.save`` pickles whatever it is given and an unrestricted ``torch.load`` runs whatever
a pickle names, so a crafted ``model.pt`` or checkpoint could run code when opened. Every state
file catneuron writes goes through :func:`save_state`, which keeps tensors, numbers, strings,
``None`` and lists/tuples/dicts of them (numpy arrays become tensors; anything else is refused
when saving), and every one it reads goes through :func:`load_state`, which is
``torch.load(weights_only=True)``: torch's restricted unpickler rebuilds tensors and plain
containers and refuses any other global. Configs travel as dicts or TOML strings. A file that
is not a whole state file (cut short by a full disk or an interrupted copy, or overwritten) is
refused as :class:`DamagedStateFile`, naming the file, instead of the zip reader's internal
error.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

_PLAIN = (bool, int, float, str, bytes, type(None))


class UnsafeStateFile(ValueError):
    """A state file that holds something other than tensors and plain values (it is not
    loaded, so nothing in it runs)."""


class DamagedStateFile(ValueError):
    """A file that is not a whole state file (truncated, empty or overwritten)."""


def plain_state(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy arrays as tensors; TypeError naming the path of anything not plain."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, order="C"))  # a copy: Ray hands read-only views
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: plain_state(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where} is a {type(obj).__name__}: state files hold only tensors and "
                    f"plain values (numbers, strings, lists, dicts)")


def save_state(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (tensors and plain values) to ``path`` atomically (temporary file, rename)."""
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(plain_state(obj), tmp)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; :class:`UnsafeStateFile` when the file names any
    code (a pickled callable or class), so nothing in it runs."""
    return _load(path, os.fspath(path), map_location)


def state_to_bytes(obj: Any) -> bytes:
    """What :func:`save_state` writes, as bytes (for storage that is not a local file, such as
    an object store: the caller publishes them)."""
    buffer = io.BytesIO()
    torch.save(plain_state(obj), buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes, where: str = "state", map_location: Any = "cpu") -> Any:
    """:func:`load_state` of bytes; ``where`` names their origin in errors."""
    return _load(io.BytesIO(data), where, map_location)


def _load(source: Any, where: str, map_location: Any) -> Any:
    """``torch.load(source, weights_only=True)`` with refusals as UnsafeStateFile and
    unreadable files as DamagedStateFile."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(unsupported GLOBAL [^\s]+|Unsupported operand \d+|"
                          r"Unsupported global: [^\s]+)", str(exc))
        if not found and "Weights only load failed" not in str(exc):
            raise _damaged(where, exc) from None
        what = found.group(1) if found else "refused by torch's weights-only unpickler"
        raise UnsafeStateFile(
            f"{where} holds more than tensors and plain values ({what}); it was not "
            "loaded: use only state files catneuron wrote, or train again") from exc
    except RuntimeError as exc:  # torch's zip reader: "PytorchStreamReader failed ..."
        if "PytorchStreamReader" not in str(exc) and "zip archive" not in str(exc):
            raise
        raise _damaged(where, exc) from None
    except (EOFError, KeyError, ValueError) as exc:  # what the unpickler makes of a cut file
        raise _damaged(where, exc) from None


def holding(obj: Any, keys: tuple[str, ...], where: str) -> Mapping:
    """``obj`` when it is a mapping that holds every one of ``keys``; else
    :class:`DamagedStateFile` naming ``where`` and what is missing. For a state file's fields,
    read before they are used (a file can hold any plain values)."""
    if not isinstance(obj, Mapping):
        raise DamagedStateFile(f"{where} holds a {type(obj).__name__}, not catneuron's fields: "
                               "it was not loaded; use a file catneuron wrote")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DamagedStateFile(f"{where} lacks {', '.join(map(repr, missing))}: it was not "
                               "loaded; use a file catneuron wrote")
    return obj


def _damaged(where: str, exc: BaseException) -> DamagedStateFile:
    """The one-line refusal of a file that is not a whole state file."""
    reason = " ".join(str(exc).split(". ")[0].split())
    if isinstance(exc, (EOFError, KeyError)) or not reason:
        reason = f"{type(exc).__name__} {reason}".strip()
    return DamagedStateFile(
        f"{where} is not a whole state file (truncated or damaged: {reason[:120]}); it was "
        "not loaded: copy it again from where it was written, or train again")
