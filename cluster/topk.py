"""Top-k frames of a whole dataset for many units, scanned by Ray actors over its shards.

Each actor is a thin shell around :class:`TopKScanner`: it loads ``model.pt`` once, reads the
shards it is given with :mod:`pipeline.reader` (each shard once), runs the stack's up-pass over
large batches that span shard boundaries and keeps a running top-k per unit
(:class:`models.neurons.topk.RunningTopK`). The merge of per-part top-k lists is the top-k of the
whole dataset. A frame is identified by ``shard_index << 32 | row``; :func:`fetch_frames` reads
the winners' pixels and provenance back.

:func:`scan` hands out the shards as chunks of about ``chunk_frames`` frames from one queue, to
whichever scanner is free. Actors cost seconds to start (a Ray worker process each, importing
torch, loading the model and running it once), which a small dataset never pays back, so the
driver decides by measurement: it scans the first chunk itself, one thread, and times it; when
it would scan the rest in less than twice an actor's start-up time (:func:`actors_pay`,
:data:`ACTOR_START_S`), it does, and no actor starts. Otherwise it starts the actors and keeps
scanning chunks until every actor is ready. ``driver_helps=False`` leaves the whole scan to
the actors (what ``benchmarks/topk.py`` measures as the actor path).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numba
import numpy as np
import torch

from cluster.state_io import read_trained_stack
from models.neurons.topk import RunningTopK
from models.neurons.units import stage_outputs
from pipeline import storage
from pipeline.reader import FrameReader, read_frames
from pipeline.records import shard_records, shard_rows
from pipeline.shards import read_manifest

Units = dict[int, list[int]]  # stage -> flat indices of its pooled units
Chunk = list[tuple[int, str]]  # (shard index, shard path) pairs scanned by one call
ROW_BITS = 32
BATCH_SIZE = 512
CHUNK_FRAMES = 128
"""Frames a scanner is handed at a time. Small, so that the work is shared evenly to the end and
an actor that becomes ready waits at most one of the driver's chunks for its first (the driver
hands chunks out only between its own); a chunk's overhead, a call and a batch of its size, is
small next to scoring 128 frames (``benchmarks/topk.py --chunk-frames``)."""
ACTOR_START_S = 5.0
"""Seconds from asking for scanner actors to their being ready, as ``benchmarks/topk.py``
measures it (``start_1``, ``start_2``) on a 2-core machine shared with other jobs."""


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch and numba use ``n`` threads inside the block (0: leave both as they are)."""
    before = torch.get_num_threads(), numba.get_num_threads()
    if n:
        torch.set_num_threads(n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


class TopKScanner:
    """Running top-``k`` frames per unit over the shard chunks passed to :meth:`scan_chunk`.

    Parameters
    ----------
    model_path : a run's ``model.pt``.
    units : key -> unit indices to track; here the key is a stage and the units its pooled ones
        (subclasses key by other things and override :meth:`outputs`).
    k : frames kept per unit.
    batch_size : frames per up-pass (batches span shard boundaries).
    n_threads : torch and numba threads while scanning (1 inside an actor that holds one CPU;
        0 keeps the process's own).
    """

    def __init__(self, model_path: str, units: dict, k: int, batch_size: int = BATCH_SIZE,
                 n_threads: int = 1) -> None:
        self.stack, _ = read_trained_stack(model_path)
        self.units = {s: torch.tensor(ix, dtype=torch.long) for s, ix in units.items()}
        self.state = {s: RunningTopK(len(ix), k) for s, ix in units.items()}
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.scan_cpu_s = 0.0  # CPU seconds of this process spent in scan_chunk
        cfg = self.stack.config
        with threads(n_threads):  # load numba's cached kernels and warm torch up: ready = fast
            self.outputs(torch.zeros(2, cfg.channels, cfg.input_size, cfg.input_size,
                                     dtype=torch.uint8))

    def ready(self) -> bool:
        """True (an actor answers once its constructor, the model load and one warm-up batch,
        has run)."""
        return True

    def outputs(self, frames: torch.Tensor) -> dict:
        """key -> responses (N, units of that key's layer) of one batch of uint8 frames."""
        outs = stage_outputs(self.stack, frames, max(self.units))
        return {s: outs[s].flatten(1) for s in self.units}

    def scan_chunk(self, chunk: Chunk) -> int:
        """Add the frames of the shards in ``chunk`` (each read once); returns how many."""
        c0 = time.process_time()
        parts = [read_frames("", shards=[path]) for _, path in chunk]  # (N_i, C, H, W) uint8
        ids = torch.cat([(i << ROW_BITS) + torch.arange(len(x)) for (i, _), x in
                         zip(chunk, parts, strict=True)])
        frames = torch.from_numpy(np.concatenate(parts))
        with threads(self.n_threads):
            for lo in range(0, len(frames), self.batch_size):
                outs = self.outputs(frames[lo : lo + self.batch_size])
                for key, ix in self.units.items():
                    self.state[key].update(outs[key][:, ix], ids[lo : lo + self.batch_size])
        self.scan_cpu_s += time.process_time() - c0
        return len(frames)

    def cpu_seconds(self) -> float:
        """CPU seconds this scanner's process has spent scanning (for benchmarks)."""
        return self.scan_cpu_s

    def scan(self, shard_index: int, path: str) -> int:
        """Add one shard's frames; returns how many."""
        return self.scan_chunk([(shard_index, path)])

    def result(self) -> dict:
        """key -> (values (U, k), frame ids (U, k))."""
        return {s: (t.values.numpy(), t.ids.numpy()) for s, t in self.state.items()}


def merge(results: list[dict], k: int) -> dict[int, RunningTopK]:
    """One top-k per key from several scanners' results."""
    merged: dict = {}
    for res in results:
        for s, (values, ids) in res.items():
            if s not in merged:
                merged[s] = RunningTopK(values.shape[0], k)
            merged[s].merge(torch.tensor(values), torch.tensor(ids))
    return merged


def chunks(shards: list[str], rows: list[int], chunk_frames: int | None = None) -> list[Chunk]:
    """Consecutive shards grouped into chunks of at least ``chunk_frames`` (default
    :data:`CHUNK_FRAMES`) frames, the last may be smaller; each shard keeps its index in
    ``shards``."""
    chunk_frames = chunk_frames or CHUNK_FRAMES
    out: list[Chunk] = [[]]
    n = 0
    for i, (path, r) in enumerate(zip(shards, rows, strict=True)):
        if n >= chunk_frames:
            out.append([])
            n = 0
        out[-1].append((i, path))
        n += r
    return [c for c in out if c]


def shard_row_counts(shards: list[str]) -> list[int]:
    """Frames per shard, from the dataset's manifest (read once; else the shard's footer)."""
    root = str(shards[0]).rsplit("/", 1)[0]  # shards are storage.join(root, name)
    rows = {storage.join(root, s["path"]): int(s["rows"]) for s in read_manifest(root)["shards"]}
    return [rows[p] if p in rows else FrameReader(root, batch_size=1, shards=[p]).num_rows()
            for p in shards]


def actors_pay(seconds_left: float, start_s: float | None = None) -> bool:
    """Whether starting actors can shorten a scan that this process alone would finish in
    ``seconds_left`` (R), when actors take ``start_s`` (S) to be ready.

    With the driver scanning while they start, ``n`` actors finish in about ``S + (R - S) / n``,
    less than ``R`` as soon as ``R > S``; the margin (``R > 2 S``) covers the CPU their start-up
    takes from the driver on a machine without idle cores. ``start_s`` defaults to
    :data:`ACTOR_START_S`."""
    return seconds_left > 2 * (ACTOR_START_S if start_s is None else start_s)


def start_scanners(model_path: str, units: dict, k: int, *, n_actors: int,
                   batch_size: int = BATCH_SIZE, scanner: type = TopKScanner,
                   wait: bool = True) -> list:
    """``n_actors`` ``scanner`` actors, one CPU each; with ``wait``, returned once each has loaded
    the model and run it once. Ray must be initialised.

    No ``runtime_env``: an actor with its own environment needs a fresh worker process, while
    one without takes a worker Ray has already started (Python and Ray imported), which saves
    part of the start-up. The scanner limits torch and numba to one thread while it scans."""
    import ray

    actor_cls = ray.remote(num_cpus=1)(scanner)
    actors = [actor_cls.remote(model_path, units, k, batch_size) for _ in range(n_actors)]
    if wait:
        ray.get([a.ready.remote() for a in actors])
    return actors


def scan_shards(actors: list, shards: list[str], k: int,
                progress: Callable[[int], None] | None = None, *,
                local: TopKScanner | None = None,
                chunk_frames: int | None = None) -> dict[int, RunningTopK]:
    """Top-k per unit over ``shards``: chunks from one queue go to whichever actor is free; with
    ``local`` (an in-process scanner), the driver scans a chunk itself whenever fewer actors
    are ready than were started. ``progress`` is called with each chunk's frame count."""
    todo = chunks(shards, shard_row_counts(shards), chunk_frames)
    return _scan_chunks(actors, todo, k, progress or (lambda n: None), local)


def _scan_chunks(actors: list, todo: list[Chunk], k: int, report: Callable[[int], None],
                 local: TopKScanner | None) -> dict[int, RunningTopK]:
    """:func:`scan_shards` over the chunks ``todo`` (scanned in order)."""
    import ray

    todo = todo[::-1]
    starting = {a.ready.remote(): a for a in actors}
    running: dict = {}  # object ref -> actor
    ready: list = []  # actors whose constructor has run, in that order
    while todo or running:
        helping = local is not None and bool(todo) and bool(starting)
        done, _ = ray.wait([*starting, *running], num_returns=1, timeout=0 if helping else None)
        for ref in done:
            if ref in starting:
                actor = starting.pop(ref)
                ready.append(actor)
            else:
                actor = running.pop(ref)
                report(ray.get(ref))
            if todo:
                running[actor.scan_chunk.remote(todo.pop())] = actor
        if helping and todo:  # an actor may have taken the last chunk just now
            report(local.scan_chunk(todo.pop()))
    results = ray.get([a.result.remote() for a in ready])
    return merge(results + ([local.result()] if local is not None else []), k)


def scan(model_path: str, shards: list[str], units: dict, k: int, *,
         n_actors: int | Callable[[], int], batch_size: int = BATCH_SIZE,
         progress: Callable[[int], None] | None = None, scanner: type = TopKScanner,
         driver_helps: bool = True) -> dict[int, RunningTopK]:
    """Top-k per unit over ``shards`` by up to ``n_actors`` ``scanner`` Ray actors (at most one
    per chunk), stopped at the end. Ray must be initialised, or ``n_actors`` a callable that
    brings it up when actors are needed and returns how many
    (:meth:`cluster.scan.RayOnDemand.actors`).

    With ``driver_helps``, the driver first scans one chunk and times it; when the rest would
    take it no longer than :func:`actors_pay` allows, it scans the rest too and starts no actor;
    otherwise it starts them and scans while they start. Without, the actors do all of it."""
    import ray

    report = progress or (lambda n: None)
    rows = shard_row_counts(shards)
    todo = chunks(shards, rows)
    local = None
    if driver_helps:
        local = scanner(model_path, units, k, batch_size, n_threads=1)
        t0 = time.perf_counter()
        n = local.scan_chunk(todo.pop(0))
        report(n)
        frames_left = sum(rows[i] for chunk in todo for i, _ in chunk)
        if not actors_pay((time.perf_counter() - t0) / max(n, 1) * frames_left):
            for chunk in todo:
                report(local.scan_chunk(chunk))
            return merge([local.result()], k)
    if callable(n_actors):
        n_actors = n_actors()
    actors = start_scanners(model_path, units, k, n_actors=max(1, min(n_actors, len(todo))),
                            batch_size=batch_size, scanner=scanner, wait=False)
    try:
        return _scan_chunks(actors, todo, k, report, local)
    finally:
        for a in actors:
            ray.kill(a)


def scan_with_actors(model_path: str, shards: list[str], units: Units, k: int, *,
                     n_actors: int, batch_size: int = BATCH_SIZE,
                     progress: Callable[[int], None] | None = None,
                     driver_helps: bool = True) -> dict[int, RunningTopK]:
    """Top-k per pooled unit (``{stage: indices}``) over ``shards``: :func:`scan`."""
    return scan(model_path, shards, units, k, n_actors=n_actors, batch_size=batch_size,
                progress=progress, driver_helps=driver_helps)


def scan_in_process(model_path: str, shards: list[str], units: dict, k: int, *,
                    batch_size: int = BATCH_SIZE, n_threads: int = 0,
                    scanner: type = TopKScanner) -> dict[int, RunningTopK]:
    """The same scan in this process, one chunk after another (the baseline; no Ray)."""
    local = scanner(model_path, units, k, batch_size, n_threads=n_threads)
    for chunk in chunks(shards, shard_row_counts(shards)):
        local.scan_chunk(chunk)
    return merge([local.result()], k)


def fetch_frames(ids: np.ndarray, shards: list[str]) -> dict[int, tuple[np.ndarray, dict]]:
    """frame id -> (uint8 frame (C, H, W), {"source", "frame_index", "shard", "row"}), reading
    each shard once."""
    out: dict[int, tuple[np.ndarray, dict]] = {}
    for s, rows in _by_shard(ids).items():
        frames, info = shard_rows(shards[s], rows)
        for row, frame, meta in zip(rows, frames, info, strict=True):
            out[(s << ROW_BITS) | row] = (frame, {**meta, "shard": shards[s], "row": row})
    return out


def fetch_records(ids: np.ndarray, shards: list[str]) -> dict[int, dict]:
    """frame id -> {"source", "frame_index"}, without reading any pixels."""
    return {(s << ROW_BITS) | row: meta for s, rows in _by_shard(ids).items()
            for row, meta in zip(rows, shard_records(shards[s], rows), strict=True)}


def _by_shard(ids: np.ndarray) -> dict[int, list[int]]:
    """Shard index -> the rows of ``ids`` (``shard << ROW_BITS | row``) in it, each once."""
    by_shard: dict[int, list[int]] = {}
    for fid in {int(i) for i in np.asarray(ids).ravel()}:
        by_shard.setdefault(fid >> ROW_BITS, []).append(fid & ((1 << ROW_BITS) - 1))
    return by_shard
