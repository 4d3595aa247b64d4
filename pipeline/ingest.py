"""Ingest: sources -> (yt-dlp) -> decode actors -> Parquet shards + ``_manifest.json``.

The driver resolves sources, downloads URLs, hands one :class:`~pipeline.video_job.VideoJob` per
video to the decode pool and records each finished video in the manifest (the only writer of it;
written in groups, :mod:`pipeline.manifest_commits`).
Resume: on start, catneuron's shards the manifest does not list (orphans) and its temporary
files are deleted, and videos already committed as ``ok`` are skipped; every other video is
decoded again from its first frame. Because a video's shards enter the manifest in the same
atomic replace that marks it ``ok``, a kill at any moment leaves each frame exactly once after
the re-run, also a kill before the first manifest: a folder that holds only catneuron's own
files (:func:`pipeline.shards.survey`) is a dataset to resume. A folder with anything else and
no manifest, or with a foreign ``.parquet`` file beside its manifest, is refused before
anything is written (:func:`check_out`). One ingest at a time writes into a local folder
(:func:`dataset_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline import storage
from pipeline.decode import DecodeConfig
from pipeline.fetch import FetchConfig, FetchError, fetch
from pipeline.manifest_commits import ManifestCommits
from pipeline.shards import (
    MANIFEST,
    ShardConfig,
    clean_uncommitted,
    empty_manifest,
    read_manifest,
    survey,
)
from pipeline.sources import expand_sources, file_identity
from pipeline.video_job import VideoJob, VideoResult, ingest_video

DOWNLOADS = "_downloads"


@dataclass(frozen=True)
class IngestConfig:
    """Everything an ingest run needs besides its sources and output folder.

    ``n_decoders``: decode actors (``None``: one per CPU of the Ray cluster; ``0``: decode in
    this process without Ray, for debugging). (Training's ``train.n_workers`` are model
    replicas, another idea, hence another name.)
    """

    decode: DecodeConfig = DecodeConfig()
    shards: ShardConfig = ShardConfig()
    fetch: FetchConfig = FetchConfig()
    n_decoders: int | None = None


class OptionsMismatch(ValueError):
    """The output folder holds a dataset made with other decode options."""


class DatasetBusy(ValueError):
    """Another ingest is writing into the output folder."""


class ForeignFiles(ValueError):
    """The output folder holds files catneuron did not write (none may be deleted or read as
    part of the dataset)."""


@dataclass
class IngestReport:
    """What one run did: per-video results of this run and videos skipped as already done."""

    out: str
    results: list[VideoResult] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (source, same as source)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things skipped on purpose, with why
    seconds: float = 0.0
    total_frames: int = 0  # frames in the dataset after this run
    total_shards: int = 0

    @property
    def ok(self) -> list[VideoResult]:
        return [r for r in self.results if r.status == "ok"]

    @property
    def failed(self) -> list[VideoResult]:
        return [r for r in self.results if r.status != "ok"]

    def exit_code(self) -> int:
        """0 if the dataset has at least one frame, else 1."""
        return 0 if self.total_frames > 0 else 1


def _options(config: IngestConfig) -> dict[str, Any]:
    """The manifest's ``options``, named as in ``[ingest.decode]`` and ``[ingest.shards]``: what
    decides the pixels (must match on resume) and the shard bounds."""
    d = asdict(config.decode)
    d.pop("batch_frames")
    d.pop("decode_threads")
    d.update(asdict(config.shards))
    return d


_MUST_MATCH = ("every", "max_frames", "input_size", "channels", "interpolation")


def check_out(out: str, config: IngestConfig) -> dict[str, Any] | None:
    """Every check on the output folder that needs no writing, so that a refusal leaves it as
    it was: the location (for an object store: the bucket exists and takes writes), the manifest
    (readable, paths inside the folder, the same decode options) and the files (only
    catneuron's own without a manifest; no foreign ``.parquet`` beside one). Returns the
    manifest, None for a new dataset.

    Raises
    ------
    pipeline.storage.LocationError, pipeline.shards.ManifestError, OptionsMismatch, ForeignFiles
        All ValueErrors with a one-line message.
    """
    storage.check_location(out, write=True)
    manifest = read_manifest(out) if storage.exists(storage.join(out, MANIFEST)) else None
    if manifest is not None:
        _check_options(out, manifest.get("options", {}), _options(config))
    contents = survey(out, manifest)
    if manifest is None and contents.foreign:
        raise ForeignFiles(
            f"{out} holds files catneuron did not write ({_names(contents.foreign)}) and no "
            f"{MANIFEST}: not a catneuron dataset; choose an empty or new --out folder")
    foreign = [n for n in contents.foreign if n.endswith(".parquet")]
    if foreign:
        raise ForeignFiles(
            f"{out} holds .parquet files catneuron did not write ({_names(foreign)}): they "
            "would be read as part of the dataset; move them out of the folder")
    return manifest


def _names(names: list[str], n: int = 3) -> str:
    """The first ``n`` names, and how many more."""
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _check_options(out: str, old: dict[str, Any], options: dict[str, Any]) -> None:
    """OptionsMismatch naming each option that decides the pixels and differs."""
    diff = [k for k in _MUST_MATCH if old.get(k) != options[k]]
    if diff:
        was = ", ".join(f"{k}={old.get(k)!r}" for k in diff)
        now = ", ".join(f"{k}={options[k]!r}" for k in diff)
        raise OptionsMismatch(
            f"{out} was ingested with {was}; this run asks for {now}. Use the same options "
            "to resume/extend it, or a new --out folder")


def open_dataset(out: str, config: IngestConfig) -> tuple[dict[str, Any], list[str]]:
    """Load or create the manifest of ``out`` (path or URI) after :func:`check_out`, and delete
    a killed run's orphan shards and temporary files (returned by name)."""
    manifest = check_out(out, config)
    storage.makedirs(out)
    if manifest is None:
        manifest = empty_manifest(_options(config))
    removed = clean_uncommitted(out, manifest)
    return manifest, removed


@contextlib.contextmanager
def dataset_lock(out: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a local dataset folder while an ingest writes into it.

    Two ingests into one folder would each delete the other's uncommitted shards as a killed
    run's orphans and replace each other's manifest, losing videos; the second is refused at
    once (:class:`DatasetBusy`). The lock is on the folder itself, so no file is added to it,
    and the kernel drops it when the process ends, however it ends. A folder in an object
    store has no such lock (the store offers none)."""
    if not storage.is_local(out):
        yield
        return
    fd = os.open(storage.local_path(out), os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusy(f"{out} is being written by another catneuron ingest: wait for "
                              "it to end, or choose another --out") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock


def downloads_dir(out: str) -> Path:
    """Where yt-dlp downloads go: ``OUT/_downloads`` for a local dataset; for one in an object
    store, a folder on this machine named after it (kept, so a re-run skips what it has), inside
    this user's own folder of the temporary directory (made here, readable by this user only:
    another user cannot plant videos or an ``index.json`` there). ValueError when that folder
    exists but is another user's or open to others."""
    if storage.is_local(out):
        return storage.local_path(out) / DOWNLOADS
    import hashlib
    import tempfile

    mine = Path(tempfile.gettempdir()) / f"catneuron-downloads-{os.getuid()}"
    mine.mkdir(mode=0o700, exist_ok=True)
    st = mine.lstat()
    if not mine.is_dir() or mine.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ValueError(f"{mine} must be a folder of this user's, closed to others (mode 700): "
                         "remove it, or set TMPDIR to another folder")
    return mine / hashlib.sha1(out.encode("utf-8")).hexdigest()[:12]


def run_ingest(
    sources: list[str],
    out: str | Path,
    config: IngestConfig = IngestConfig(),
    *,
    progress: bool = True,
    pool: Any = None,
) -> IngestReport:
    """Ingest ``sources`` into the dataset folder ``out`` (created, or resumed/extended).

    Parameters
    ----------
    sources:
        Files, folders, globs, source-list files, URLs (see :mod:`pipeline.sources`).
    out:
        Dataset folder: a path or a URI (``s3://bucket/prefix``, see :mod:`pipeline.storage`).
    config:
        Decode, shard, fetch and worker options.
    progress:
        Show a tqdm progress bar on stderr.
    pool:
        An open :class:`pipeline.pool.DecodePool` to use (and leave open) instead of starting
        ``config.n_decoders`` actors; lets a caller reuse warm actors across runs.

    Raises
    ------
    OptionsMismatch
        If ``out`` holds a dataset made with other decode options.
    DatasetBusy
        If another ingest is writing into the local folder ``out``.
    """
    t0 = time.perf_counter()
    out = str(out)
    check_out(out, config)  # a refusal leaves the folder as it was: not made, not locked
    storage.makedirs(out)
    with dataset_lock(out):
        return _run_locked(sources, out, config, progress, pool, t0)


def _run_locked(sources: list[str], out: str, config: IngestConfig, progress: bool, pool: Any,
                t0: float) -> IngestReport:
    """:func:`run_ingest` under the folder's lock: the manifest is read (and checked again)
    only once no other ingest can change it."""
    from tqdm import tqdm

    manifest, removed = open_dataset(out, config)
    report = IngestReport(out=out, removed=removed)
    queue = _Queue(manifest, report, out, config)

    commits = ManifestCommits(out, manifest)

    def commit(result: VideoResult) -> None:
        commits.add(dict(result.record(), **queue.identity.get(result.source, {})), result.shards)
        report.results.append(result)

    try:
        _queue_sources(sources, out, config, queue, commit)
        jobs = queue.jobs
        bar = tqdm(total=len(jobs), desc="ingest", unit="video", file=sys.stderr,
                   disable=not progress)
        frames = 0
        with bar:
            for result in _run_jobs(jobs, config.n_decoders, pool):
                commit(result)
                frames += result.frames
                bar.set_postfix(frames=frames, failed=len(report.failed), refresh=False)
                bar.update(1)
    finally:  # the finished videos not yet written, also on an error or a Ctrl-C
        commits.flush()
    report.total_frames = sum(s["rows"] for s in manifest["shards"])
    report.total_shards = len(manifest["shards"])
    report.seconds = time.perf_counter() - t0
    return report


def _queue_sources(sources: list[str], out: str, config: IngestConfig, queue: _Queue,
                   commit: Callable[[VideoResult], None]) -> None:
    """Resolve ``sources``: local videos and downloads (fetched here) go to ``queue``, a source
    that cannot be resolved, read or fetched is committed as failed, a skipped one noted."""
    for src in expand_sources(sources):
        if src.note:
            queue.report.notes.append(f"{src.name}: {src.note}")
        elif src.error:
            commit(VideoResult(source=src.name, status="failed", error=src.error))
        elif src.url:
            try:
                for f in fetch(src.url, downloads_dir(out), config.fetch):
                    queue.add_download(f.source, f.path)
            except FetchError as e:
                commit(VideoResult(source=src.url, status="failed", error=str(e)))
        else:
            try:
                queue.add_file(src.name, src.path)
            except OSError as e:  # permission denied, an I/O error: this file only
                commit(VideoResult(source=src.name, status="failed",
                                   error=f"cannot read the file: {e.strerror or e}"))


class _Queue:
    """The videos this run decodes; those already committed ``ok`` are reported as skipped.

    A local file is recognised by (size, SHA-256) among the committed records, a download (and
    a record from before content keys) by its source name.
    """

    def __init__(self, manifest: dict, report: IngestReport, out: str,
                 config: IngestConfig) -> None:
        ok = [v for v in manifest["videos"] if v["status"] == "ok"]
        self.by_name = {v["source"]: v for v in ok}
        self.by_content = {(v["bytes"], v["sha256"]): v for v in ok if "sha256" in v}
        self.report, self.out, self.config = report, out, config
        self.jobs: list[VideoJob] = []
        self.identity: dict[str, dict] = {}  # source key -> {"bytes", "sha256"}
        self.queued: dict = {}  # (bytes, sha256) or a download's source -> the name queued

    def add_file(self, name: str, path: str) -> None:
        """Queue a local video unless its content is already in the dataset or the queue (a
        copy of a queued video is reported as its duplicate)."""
        size, digest = file_identity(path)
        done = (self.by_content.get((size, digest)) or self.by_name.get(name)
                or self.by_name.get(path))  # a record keyed by absolute path (older datasets)
        if done is not None:
            self.report.skipped.append(done)
        elif (size, digest) in self.queued:
            self.report.duplicates.append((name, self.queued[(size, digest)]))
        else:
            self.queued[(size, digest)] = name
            key = f"{name}#{digest[:12]}"
            self.identity[key] = {"bytes": size, "sha256": digest}
            self.jobs.append(VideoJob(key, path, str(self.out), self.config.decode,
                                      self.config.shards))

    def add_download(self, source: str, path: str) -> None:
        """Queue a fetched video unless its source name is already committed or queued."""
        if source in self.by_name:
            self.report.skipped.append(self.by_name[source])
        elif source not in self.queued:
            self.queued[source] = source
            self.jobs.append(VideoJob(source, path, str(self.out), self.config.decode,
                                      self.config.shards))


def _run_jobs(jobs: list[VideoJob], workers: int | None, pool: Any = None):
    """Yield results of ``jobs``: in-process for ``workers == 0``, else on the Ray decode pool."""
    if not jobs:
        return
    if pool is not None:
        yield from pool.map_unordered(jobs)
        return
    if workers == 0:
        for job in jobs:
            yield ingest_video(job)
        return
    from pipeline.pool import DecodePool, ensure_ray

    ensure_ray()
    n = workers if workers is not None else None
    with DecodePool(n if n is None else min(n, len(jobs))) as pool:
        yield from pool.map_unordered(jobs)


def summary_table(report: IngestReport, width: int = 60) -> str:
    """A plain aligned table: one line per video of this run, then totals."""
    rows = [("status", "frames", "shards", "seconds", "source / reason")]
    for r in report.results:
        name = r.source if len(r.source) <= width else "..." + r.source[-(width - 3):]
        rows.append((r.status, str(r.frames), str(len(r.shards)), f"{r.seconds:.1f}", name))
        if r.error:
            rows.append(("", "", "", "", "  -> " + r.error))
    for v in report.skipped:
        rows.append(("skipped", str(v.get("frames", "?")), str(len(v.get("shards", []))), "-",
                     v["source"] + "  (already ingested)"))
    for name, first in report.duplicates:
        rows.append(("duplicate", "-", "-", "-", f"{name}  (same content as {first})"))
    for note in report.notes:
        rows.append(("skipped", "-", "-", "-", note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].rjust(widths[i]) if i else row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + "  " + row[4])
    n_ok, n_failed = len(report.ok), len(report.failed)
    lines.append("-" * min(100, max(len(x) for x in lines)))
    if report.removed:
        lines.append(f"removed {len(report.removed)} file(s) an interrupted run left "
                     "uncommitted (a video counts once its shards are in the manifest)")
    dup = report.duplicates
    lines.append(
        f"sources ok: {n_ok}, failed: {n_failed}, skipped (done before): {len(report.skipped)}"
        f"{f', duplicates: {len(dup)}' if dup else ''}"
        f"{f', symlinked folders not followed: {len(report.notes)}' if report.notes else ''}; "
        f"frames this run: {sum(r.frames for r in report.results)}; dataset: "
        f"{report.total_frames} frames in {report.total_shards} shards; "
        f"{report.seconds:.1f} s -> {report.out}"
    )
    return "\n".join(lines)
