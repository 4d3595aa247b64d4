"""Checks a train job passes before Ray starts: each failure is one line naming the fix.

What is checked here could otherwise only fail inside a worker, after Ray has started, a
checkpoint has been written and a traceback has been printed: a CUDA device that is not there, a
dataset with no frames, a worker whose shards hold fewer frames than one batch (it drops the
last partial batch, so it would have nothing to train on), too few shards for the workers and
a frame size other than the model's input (``cluster.trainer.check_data``), and an object
store whose bucket is missing or refuses writes, or a URI with a ``..`` (nothing would be
written where it was meant to go).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch

from jobs.errors import UserError
from pipeline import storage
from pipeline.reader import shards_for_worker
from pipeline.shards import read_manifest


class PreflightError(UserError, ValueError):
    """The job cannot run as configured; the message says what to change (exit 2)."""


def check_device(config: Any, address: str | None) -> None:
    """``train.device = "cuda"`` needs a GPU that torch sees, when Ray runs on this machine.

    On a cluster (``address`` given) the workers may have GPUs the driver lacks: not checked.
    """
    if config.train.device == "cuda" and not address and not torch.cuda.is_available():
        raise PreflightError(
            "train.device='cuda' but torch sees no CUDA GPU on this machine (torch "
            f"{torch.__version__}): use --train.device=cpu or --train.device=auto")


def check_storage(config: Any) -> None:
    """The dataset's location can be read and the run folder's written
    (:func:`pipeline.storage.check_location`: LocationError, one line)."""
    storage.check_location(config.data.path)
    storage.check_location(config.train.run_dir, write=True)


def worker_frames(config: Any, train_shards: list[str]) -> list[int]:
    """Frames in each worker's share of the training shards (from the manifest's row counts)."""
    rows = {s["path"]: int(s["rows"]) for s in read_manifest(config.data.path)["shards"]}
    n = config.train.n_workers
    return [sum(rows[Path(p).name] for p in shards_for_worker(train_shards, k, n))
            for k in range(n)]


def check_shard_footers(root: str, shards: list[str]) -> None:
    """Every shard opens as Parquet and holds the rows the manifest says (its footer alone is
    read): a damaged or replaced shard would stop a worker minutes into the run."""
    import pyarrow.parquet as pq

    rows = {s["path"]: int(s["rows"]) for s in read_manifest(root)["shards"]}
    for shard in shards:
        name = Path(shard).name
        try:
            with storage.open_input_file(shard) as f:
                n = pq.ParquetFile(f).metadata.num_rows
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise PreflightError(f"the shard {shard} cannot be read as Parquet "
                                 f"({str(exc)[:80]}): re-ingest the dataset") from None
        if name in rows and n != rows[name]:
            raise PreflightError(f"the shard {shard} holds {n} frames and {root}'s manifest "
                                 f"says {rows[name]}: the dataset was edited; re-ingest it")


def check_data_feeds_workers(config: Any) -> None:
    """The dataset has frames, enough shards, the model's frame size, and every worker at least
    one full batch (``data.batch_size`` frames)."""
    from cluster.trainer import check_data

    path = config.data.path
    if not read_manifest(path)["shards"]:
        raise PreflightError(
            f"the dataset {path} has no frames (its manifest lists no shards): ingest videos "
            f"into it first, e.g. `catneuron ingest SOURCES --out {shlex.quote(str(path))}`")
    train_shards, holdout = check_data(config)
    check_shard_footers(path, [*train_shards, *holdout])
    frames = worker_frames(config, train_shards)
    bs = config.data.batch_size
    if min(frames) < bs:
        k = frames.index(min(frames))
        raise PreflightError(
            f"worker {k} of {len(frames)} gets {frames[k]} frames, fewer than "
            f"data.batch_size={bs} (frames per worker: {frames}): use --data.batch_size="
            f"{max(1, min(frames))}, fewer --workers, or ingest more frames")


def preflight(config: Any, address: str | None = None) -> None:
    """Every check above; raises PreflightError (or FileNotFoundError / ValueError from the
    dataset's manifest) before Ray starts."""
    check_storage(config)
    check_device(config, address)
    check_data_feeds_workers(config)
