"""Single rows of a shard: the frames and their provenance (source, frame index)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from pipeline.reader import read_frames


def shard_rows(path: str | os.PathLike, rows: Sequence[int]) -> tuple[np.ndarray, list[dict]]:
    """Frames uint8 (n, C, H, W) of ``rows`` of one shard, and ``{"source", "frame_index"}``
    for each."""
    path = str(path)
    frames = read_frames(os.path.dirname(path), shards=[path])[list(rows)]
    return frames, shard_records(path, rows)


def shard_records(path: str | os.PathLike, rows: Sequence[int]) -> list[dict]:
    """``{"source", "frame_index"}`` of ``rows`` of one shard, read without the pixels."""
    table = pq.read_table(str(path), columns=["source", "frame_index"]).take(list(rows))
    return [{"source": s, "frame_index": int(i)}
            for s, i in zip(table.column("source").to_pylist(),
                            table.column("frame_index").to_pylist(), strict=True)]
