"""Stream frames of a dataset folder as numpy batches (N, C, H, W) for training workers.

A worker ``i`` of ``n`` reads a disjoint round-robin subset of the shards
(:func:`shards_for_worker`), as the model replicas of Le et al. / DistBelief (Dean et al. 2012)
each read their own part of the data. Batches can be shuffled within a bounded buffer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.shards import read_manifest


def list_shards(root: str | os.PathLike) -> list[str]:
    """Complete shard files of a dataset folder (a path or URI), sorted by name.

    The manifest lists shards as the decode actors finished them, an order that changes from
    one ingest to the next; by name (video prefix and digest, then shard number) the same
    videos give the same order wherever and however they were ingested. Everything downstream
    follows this order: the held-out shard (the last), the workers' split, the frames a stage
    is prepared on, the frame ids of a scan.

    Raises
    ------
    FileNotFoundError
        If ``root`` has no ``_manifest.json`` or a listed shard is missing.
    ValueError
        If the manifest is unreadable or of another schema version.
    """
    manifest = read_manifest(root)
    present = set(storage.list_files(root))  # one listing, not one request per shard
    names = sorted(s["path"] for s in manifest["shards"])
    paths = [storage.join(root, name) for name in names]
    missing = [p for p, name in zip(paths, names, strict=True) if name not in present]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard(s) listed in {root}/_manifest.json are missing (first: "
            f"{missing[0]}); re-run the same 'catneuron ingest' command to rebuild them"
        )
    return paths


def shards_for_worker(shards: list[str], worker_index: int, n_workers: int) -> list[str]:
    """Disjoint round-robin subset: shards ``worker_index, worker_index + n_workers, ...``.

    The union over ``worker_index in range(n_workers)`` is ``shards``, each exactly once.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers={n_workers}: must be >= 1")
    if not 0 <= worker_index < n_workers:
        raise ValueError(f"worker_index={worker_index}: must be in [0, {n_workers})")
    return list(shards[worker_index::n_workers])


def _shard_frames(path: str) -> np.ndarray:
    """One shard's ``pixels`` as uint8 (N, C, H, W)."""
    filesystem, inner = storage.resolve(path)
    table = pq.read_table(inner, columns=["pixels", "height", "width", "channels"],
                          filesystem=filesystem)
    n = table.num_rows
    if n == 0:
        return np.zeros((0, 1, 1, 1), np.uint8)
    h = int(table.column("height")[0].as_py())
    w = int(table.column("width")[0].as_py())
    c = int(table.column("channels")[0].as_py())
    pix = table.column("pixels").combine_chunks()
    # fixed_size_binary: buffers() = [validity, data]; data starts at offset * byte_width.
    width = pix.type.byte_width
    if width != h * w * c:
        raise ValueError(f"{path}: pixels are {width} bytes but height*width*channels={h * w * c}")
    data = np.frombuffer(pix.buffers()[1], np.uint8, count=n * width, offset=pix.offset * width)
    hwc = data.reshape(n, h, w, c)  # (N, H, W, C)
    return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))  # (N, C, H, W)


class ShardFrames:
    """Decoded shards kept in memory, up to ``budget_bytes``: a reader that passes over the
    same shards every epoch (a training worker) decodes each Parquet file once, not once an
    epoch. Shards are kept as they are first read, never evicted; those past the budget are
    read each time (first come, first kept: a cyclic pass over more than fits would miss on
    every read under least-recently-used eviction). Each read hands out a copy, so no caller
    can change what the next one gets."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes={budget_bytes}: must be >= 0")
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._kept: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        """Shard ``path``'s frames, uint8 (N, C, H, W)."""
        kept = self._kept.get(path)
        if kept is not None:
            return kept.copy()
        x = _shard_frames(path)
        if self.nbytes + x.nbytes <= self.budget_bytes:
            self._kept[path] = x.copy()
            self.nbytes += x.nbytes
        return x


def read_frames(
    root: str | os.PathLike, *, shards: list[str] | None = None, limit: int | None = None
) -> np.ndarray:
    """The frames (first ``limit``) of ``shards`` (default: all) as uint8 (N, C, H, W)."""
    paths = list_shards(root) if shards is None else list(shards)
    out: list[np.ndarray] = []
    n = 0
    for p in paths:
        if limit is not None and n >= limit:
            break
        x = _shard_frames(p)
        if limit is not None:
            x = x[: limit - n]
        out.append(x)
        n += len(x)
    if not out:
        raise ValueError(f"{root}: no frames in the selected shards")
    shapes = {a.shape[1:] for a in out if len(a)}
    if len(shapes) > 1:
        raise ValueError(
            f"{root}: frames of different shapes {sorted(shapes)} (ingested with --input-size 0 "
            "from videos of different resolutions); re-ingest with a fixed --input-size"
        )
    return np.concatenate(out)


class FrameReader:
    """Iterate a dataset (or one worker's part of it) in uint8 batches (N, C, H, W).

    Parameters
    ----------
    root:
        Dataset folder written by ``catneuron ingest``.
    batch_size:
        Frames per batch; the last batch may be smaller unless ``drop_last``.
    worker_index, n_workers:
        Read only :func:`shards_for_worker` ``(shards, worker_index, n_workers)``.
    shuffle_buffer:
        ``0``: frames in shard order. ``> 0``: shard order is permuted and frames are drawn at
        random from a buffer of about this many frames (memory: buffer + one shard).
    seed:
        Seeds the permutations; the same seed gives the same order on every pass.
    shards:
        Explicit shard paths (overrides the worker split).
    frames:
        Where shards are read from: a :class:`ShardFrames` kept across passes (default: each
        shard read from its file every pass).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        batch_size: int,
        worker_index: int = 0,
        n_workers: int = 1,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        shards: list[str] | None = None,
        frames: ShardFrames | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer={shuffle_buffer}: must be >= 0")
        self.root = str(root)
        manifest = read_manifest(self.root)
        self._rows = {storage.join(self.root, s["path"]): int(s["rows"])
                      for s in manifest["shards"]}
        if shards is None:
            shards = shards_for_worker(list_shards(self.root), worker_index, n_workers)
        self.shards: list[str] = [str(s) for s in shards]
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.drop_last = drop_last
        self._read = _shard_frames if frames is None else frames

    def num_rows(self) -> int:
        """Rows in this reader's shards (from the manifest)."""
        total = 0
        for s in self.shards:
            if s in self._rows:
                total += self._rows[s]
            else:  # an explicit shard outside the manifest: read its footer
                with storage.open_input_file(s) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
        return total

    def __len__(self) -> int:
        n = self.num_rows()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        order = list(self.shards)
        if self.shuffle_buffer:
            order = [order[i] for i in rng.permutation(len(order))]
        bs = self.batch_size
        cap = max(self.shuffle_buffer, bs)
        pending: np.ndarray | None = None
        for path in order:
            x = self._read(path)
            pending = x if pending is None or not len(pending) else np.concatenate([pending, x])
            if self.shuffle_buffer:
                # Buffer shuffle: mix what is held, emit until only ``cap - bs`` frames remain.
                while len(pending) >= cap:
                    pending = pending[rng.permutation(len(pending))]
                    n_out = (len(pending) - cap) // bs + 1
                    for i in range(n_out):
                        yield pending[i * bs : (i + 1) * bs]
                    pending = pending[n_out * bs :]
            else:
                n_out = len(pending) // bs
                for i in range(n_out):
                    yield pending[i * bs : (i + 1) * bs]
                pending = pending[n_out * bs :]
        if pending is None or not len(pending):
            return
        if self.shuffle_buffer:
            pending = pending[rng.permutation(len(pending))]
        n_full = len(pending) // bs
        for i in range(n_full):
            yield pending[i * bs : (i + 1) * bs]
        if not self.drop_last and len(pending) % bs:
            yield pending[n_full * bs :]
