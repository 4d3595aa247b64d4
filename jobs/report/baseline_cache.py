"""A folder of baseline tables, each named by a digest of everything it is computed from.

The drawn baselines of ``catneuron evaluate`` (the random-weight stacks, the exemplar stacks
and their spread exemplars, the linear filters cut from training frames:
:func:`jobs.report.evaluation.drawn_baselines`) depend on the stack's configuration, the
training frames, the probe's images and the evaluation's seed, filters and draws, never on the
trained weights. Runs of one configuration on one dataset (a sweep over training seeds, a run
evaluated again) share them, and they are most of evaluate's time: each draw fits a whitening
and reads the probe through a stack of its own. So they are computed once per key and read
back afterwards.

The key (:func:`baseline_key`) is a SHA-256 over the model configuration, the bytes of the
frames and of the probe's images, the settings, the arithmetic that computes the tables (CPU,
library versions, thread count: a cache folder shared between machines never hands one
machine's roundings to another) and the source of the code (every module of ``models`` and
:mod:`jobs.report.evaluation`): any edit to that code is a miss, never an old table. Evaluated
again with the cache or without, a run's ``evaluation.json`` is the same.

A file is read with numpy's ``allow_pickle=False`` (arrays only: nothing read can run code)
and its name is the key's hex digest (nothing read names a path). A file that cannot be read,
or holds arrays of another shape, is a miss: computed again and written over, with a one-line
warning. The folder can be deleted at any time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Tables = dict[str, np.ndarray]
Drawn = tuple[Tables, dict[str, list[np.ndarray]]]

LAYOUT = 1  # the file layout below; part of the key
_SEP = "."  # "base.<name>" or "more.<name>.<draw>"


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/catneuron/baselines`` (``~/.cache/...`` when that is unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "catneuron" / "baselines"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 of the source of every module of ``models`` and of the evaluation report,
    path by path in sorted order."""
    import jobs.report.evaluation as evaluation
    import models

    root = Path(models.__file__).parent.parent
    files = sorted(Path(models.__file__).parent.rglob("*.py")) + [Path(evaluation.__file__)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _array_digest(a: np.ndarray | None) -> str:
    if a is None:
        return "none"
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.data).hexdigest()


def arithmetic() -> dict:
    """What moves the tables' roundings besides the code: the process's arithmetic
    (:func:`models.kernels.arithmetic.fingerprint`: CPU, torch and its kernels, numba),
    torch's thread count, and numpy's and scikit-learn's versions (the spread picks)."""
    import sklearn
    import torch

    from models.kernels.arithmetic import fingerprint

    return {**fingerprint(), "threads": torch.get_num_threads(), "numpy": np.__version__,
            "sklearn": sklearn.__version__}


def baseline_key(config, images: np.ndarray, frames: np.ndarray | None, **settings) -> str:
    """Hex SHA-256 naming the tables of a stack configured by ``config`` (a dataclass, the
    stack's ``StackConfig``) on probe ``images`` with training ``frames`` and ``settings``
    (seed, filters, draws: JSON values), computed here (:func:`arithmetic`)."""
    what = {"layout": LAYOUT, "config": dataclasses.asdict(config), "settings": settings,
            "images": _array_digest(images), "frames": _array_digest(frames),
            "arithmetic": arithmetic(), "source": source_digest()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


class BaselineCache:
    """Baseline tables in ``folder``, one ``<key>.npz`` each. ``status`` says what the last
    :meth:`get` did: ``"read"`` (from a file), ``"written"`` or ``"computed"`` (the folder
    could not be written)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.status: str | None = None
        self.path: Path | None = None

    def get(self, key: str, n_rows: int, compute: Callable[[], Drawn]) -> Drawn:
        """The tables named ``key`` (each with ``n_rows`` rows): read, or ``compute()``d and
        written."""
        self.path = self.folder / f"{key}.npz"
        found = self._read(self.path, n_rows)
        if found is not None:
            self.status = "read"
            return found
        drawn = compute()
        self.status = "written" if self._write(self.path, drawn) else "computed"
        return drawn

    @staticmethod
    def _read(path: Path, n_rows: int) -> Drawn | None:
        """The tables of ``path``, or None (with a warning for a file that is there but cannot
        be used)."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            return _unpack(arrays, n_rows)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            print(f"warning: baseline cache {path} is unusable ({exc}); computing the "
                  "baselines again", file=sys.stderr)
            return None

    @staticmethod
    def _write(path: Path, drawn: Drawn) -> bool:
        """Write ``drawn`` to ``path`` whole or not at all (a temporary name, then a rename);
        False (with a warning) when the folder cannot be written."""
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, **_pack(drawn))
            os.replace(tmp, path)
            return True
        except OSError as exc:
            print(f"warning: cannot write the baseline cache {path} ({exc})", file=sys.stderr)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False


def _pack(drawn: Drawn) -> Tables:
    """One flat name -> array mapping, in the tables' order."""
    base, more = drawn
    arrays = {f"base{_SEP}{k}": v for k, v in base.items()}
    for k, vs in more.items():
        arrays.update({f"more{_SEP}{k}{_SEP}{i}": v for i, v in enumerate(vs)})
    return arrays


def _unpack(arrays: Tables, n_rows: int) -> Drawn:
    """:func:`_pack`'s inverse; ValueError for names or arrays it would not have written."""
    base: Tables = {}
    more: dict[str, list[np.ndarray]] = {}
    for name, v in arrays.items():
        if v.dtype != np.float64 or v.ndim != 2 or len(v) != n_rows:
            raise ValueError(f"{name} is {v.dtype} {v.shape}, not float64 ({n_rows}, units)")
        part, _, rest = name.partition(_SEP)
        kind, _, draw = rest.rpartition(_SEP)
        if part == "base" and rest:
            base[rest] = v
        elif part == "more" and kind and draw == str(len(more.get(kind, []))):
            more.setdefault(kind, []).append(v)
        else:
            raise ValueError(f"unexpected array {name!r}")
    return base, more
