"""One unit of ingest work: decode one video and write its frames as shards.

:func:`ingest_video` is a plain function (no Ray) so it runs the same in a decode actor
(:mod:`pipeline.pool`), in-process (``--workers 0``), and in tests. Pixels never leave the process
that decoded them: the worker writes its own shards and returns only their metadata.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import storage
from pipeline.decode import DecodeConfig, DecodeError, VideoInfo, iter_frames
from pipeline.shards import ShardConfig, ShardInfo, ShardWriter


@dataclass(frozen=True)
class VideoJob:
    """Decode ``path`` (whose dataset name is ``source``) into shards under ``out_dir``."""

    source: str
    path: str
    out_dir: str
    decode: DecodeConfig
    shards: ShardConfig


@dataclass
class VideoResult:
    """Outcome of one :class:`VideoJob`; ``status`` is ``"ok"`` when at least one frame was kept."""

    source: str
    status: str
    frames: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    error: str | None = None
    frames_read: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the decoding process (robust on a busy machine)

    def record(self) -> dict:
        """The manifest's per-video entry (without the shard list)."""
        return {
            "source": self.source,
            "status": self.status,
            "frames": self.frames,
            "error": self.error,
            "frames_decoded": self.frames_read,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


def shard_prefix(source: str) -> str:
    """A safe, unique file-name stem for ``source``: readable tail + a hash of the full string."""
    tail = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(source.rstrip("/")).stem)[-40:].strip("_-.")
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:10]
    return f"{tail or 'video'}-{digest}"


def ingest_video(job: VideoJob) -> VideoResult:
    """Decode ``job.path`` and write its kept frames as shards; never raises for bad input.

    A file that cannot be decoded gives ``status="failed"`` with the reason and no shards. A
    stream that breaks mid-way gives ``status="ok"`` with the frames before the break and the
    break noted in ``error``.
    """
    t0 = time.perf_counter()
    c0 = time.process_time()
    infos: list[VideoInfo] = []
    result = VideoResult(source=job.source, status="failed")
    writer = ShardWriter(
        job.out_dir,
        shard_prefix(job.source),
        max_rows=job.shards.max_rows,
        max_bytes=job.shards.max_bytes,
    )
    try:
        with writer:
            for batch in iter_frames(job.path, job.decode, infos):
                writer.write(job.source, batch.pixels, batch.frame_index, batch.timestamp_ms)
                result.frames += len(batch.pixels)
            result.shards = writer.finalize()
    except DecodeError as e:
        result.error = str(e)
        result.frames = 0
    except Exception as e:  # noqa: BLE001 - a bad file must not stop the other videos
        result.error = f"unexpected {type(e).__name__} while decoding: {e}"
        result.frames = 0
    if infos:
        result.frames_read = infos[0].frames_read
    if result.error is None:
        if result.frames:
            result.status = "ok"
            if infos and infos[0].warnings:
                result.error = "; ".join(infos[0].warnings[:3])
        else:
            result.error = "no frame selected (check --every / --max-frames)"
    if result.status != "ok":  # also the shards renamed before an error part-way
        for s in writer.shards:
            storage.delete(storage.join(job.out_dir, s.path))
        result.shards = []
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    return result
