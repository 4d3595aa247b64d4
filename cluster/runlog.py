"""Run-folder logging (metrics as JSONL and TensorBoard event files, events as a text log) and
the per-stage progress bar.

``metrics.jsonl`` holds one JSON object per record (``{"stage", "step", "worker", "recon_error",
"fe_gap", "staleness_mean", "frames_per_s", "updates_applied", ...}``). ``step`` is always the
stage's steps done when the figures were taken (sync: t + 1 after step t, for the worker records
and the whole-stage record alike; async: the global step count once the chunk is accounted).
:func:`load_metrics` is the one reader of the file. The same scalars go to
TensorBoard: a worker's record under ``stage{k}/worker{i}/<name>`` (each worker's curve its own),
a record of the whole stage (no ``worker``, e.g. the sync mean) under ``stage{k}/<name>``.
``events.log`` records faults, restarts, restores and checkpoints, one timestamped line each.

A run folder in an object store (``s3://...``) cannot be appended to: the files are then
written in a local staging folder (resumed from the store's copies) and uploaded whole by
:meth:`RunLogger.sync` (at every checkpoint) and :meth:`RunLogger.close`.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from pipeline import storage

FILES = ("metrics.jsonl", "events.log")

RUN_WRITES = ("config.toml", "model.pt", "metrics.jsonl", "events.log", "corpus_tops.json",
              "checkpoints", "tensorboard")
"""What ``catneuron train`` writes into a run folder (files and folders)."""


def run_files(run_dir: str) -> list[str]:
    """Those of :data:`RUN_WRITES` that ``run_dir`` (a path or URI) already holds: a fresh run
    would overwrite or append to them, so it is refused (another run's, or the user's own)."""
    present = set(storage.list_entries(run_dir))
    return [name for name in RUN_WRITES if name in present]


def refuse_existing_run(run_dir: str, resume: bool) -> None:
    """FileExistsError when a fresh run would write into a folder (path or URI) that holds a
    run's files (:func:`run_files`)."""
    found = [] if resume else run_files(run_dir)
    if found:
        raise FileExistsError(f"{run_dir} already holds {', '.join(found)}: pass --resume to "
                              "continue its run, or choose a new --run-dir")



class RunLogger:
    """Writes ``metrics.jsonl``, ``events.log`` and TensorBoard events under ``run_dir``.

    Parameters
    ----------
    run_dir : the run folder (created): a path or URI.
    echo : called with each event line (e.g. ``print``); None for silence.
    tensorboard : write TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``).
    """

    def __init__(self, run_dir: str | Path, echo: Callable[[str], None] | None = print,
                 tensorboard: bool = True) -> None:
        self.run_dir = str(run_dir)
        self.local = storage.staging_dir(self.run_dir)  # the run folder itself when local
        self._remote = not storage.is_local(self.run_dir)
        if self._remote:  # continue the store's files (resume)
            for name in FILES:
                if storage.exists(storage.join(self.run_dir, name)):
                    (self.local / name).write_bytes(
                        storage.read_bytes(storage.join(self.run_dir, name)))
        self._metrics = open(self.local / "metrics.jsonl", "a", buffering=1)
        self._events = open(self.local / "events.log", "a", buffering=1)
        self.echo = echo
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.local / "tensorboard"))

    def metrics(self, record: Mapping) -> None:
        """One metrics record (must carry ``stage`` and ``step``)."""
        record = {k: v for k, v in record.items() if v is not None}
        record.setdefault("time", time.time())
        self._metrics.write(json.dumps(record) + "\n")
        if self._tb is None:
            return
        stage, step = record["stage"], int(record["step"])
        worker = record.get("worker")
        for key, value in record.items():
            if key in ("stage", "step", "worker", "time") or not isinstance(value, (int, float)):
                continue
            if isinstance(value, bool) or not math.isfinite(float(value)):
                continue
            tag = (f"stage{stage}/{key}" if worker is None
                   else f"stage{stage}/worker{worker}/{key}")
            self._tb.add_scalar(tag, float(value), step)

    def event(self, text: str) -> None:
        """One event line (fault, restart, restore, checkpoint)."""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}"
        self._events.write(line + "\n")
        if self.echo is not None:
            self.echo(line)

    def sync(self) -> None:
        """Upload the files to a run folder in an object store (nothing to do locally)."""
        if not self._remote:
            return
        self._metrics.flush()
        self._events.flush()
        if self._tb is not None:
            self._tb.flush()
        self._upload()

    def _upload(self) -> None:
        """Every staged file, whole, to the same name under the run folder."""
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            relative = path.relative_to(self.local).as_posix()
            storage.write_bytes(storage.join(self.run_dir, relative), path.read_bytes())

    def close(self) -> None:
        """Flush and close every file (and upload them to an object store)."""
        self._metrics.close()
        self._events.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        if self._remote:
            self._upload()
            shutil.rmtree(self.local, ignore_errors=True)


@dataclass
class MetricsLog:
    """What :func:`load_metrics` read: the records, and whether the file was there and how many
    of its lines were not a record (a line cut short when a run was killed mid-write)."""

    records: list[dict]
    found: bool
    skipped: int


def load_metrics(run_dir: str | Path) -> MetricsLog:
    """The records of ``run_dir/metrics.jsonl`` (a path or URI), in file order: every line that
    is a JSON object with ``stage`` and ``step``; other non-blank lines are counted as skipped.
    A missing file gives no records (``found`` False)."""
    path = storage.join(str(run_dir), "metrics.jsonl")
    if not storage.exists(path):
        return MetricsLog([], found=False, skipped=0)
    records, skipped = [], 0
    for line in storage.read_bytes(path).decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            record = None
        if isinstance(record, dict) and "stage" in record and "step" in record:
            records.append(record)
        else:
            skipped += 1
    return MetricsLog(records, found=True, skipped=skipped)


def is_number(x) -> bool:
    """A finite int or float (not a bool) that a float holds: a metrics record's step or value
    as the readers plot and format it. An int too long for a float (a damaged file: JSON has no
    limit) is none."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl`` (:func:`load_metrics`)."""
    return load_metrics(run_dir).records


def stage_progress(stage: int, total: int, initial: int = 0,
                   file: TextIO | None = None) -> tqdm:
    """A progress bar over a stage's ``total`` steps (steps/s, and the reconstruction error the
    driver sets as postfix); silent when ``file`` (stdout) is not a terminal."""
    file = sys.stdout if file is None else file
    return tqdm(total=total, initial=initial, desc=f"stage {stage}", unit="step", file=file,
                disable=not file.isatty(), dynamic_ncols=True)


def show_recon_error(bar: tqdm, record: Mapping) -> None:
    """The progress bar's figure: the latest reconstruction error, when the record has one."""
    if "recon_error" in record:
        bar.set_postfix(recon_error=f"{record['recon_error']:.4f}", refresh=False)
