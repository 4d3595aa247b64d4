"""The dataset: Parquet shard files of bounded size plus ``_manifest.json``, in a folder that is a
local path or a URI (``s3://bucket/prefix``, see :mod:`pipeline.storage`).

One row per frame::

    source str | frame_index int64 | timestamp_ms float64 | height int32 | width int32 |
    channels int32 | pixels fixed_size_binary[H*W*C]  (HWC bytes, RGB order for colour)

``pixels`` is ``fixed_size_binary`` rather than pyarrow's FixedShapeTensor: Parquet stores the
latter's uint8 as one INT32 per pixel (4x the bytes, many times slower); the reader reshapes.

Shards are written as ``.NAME.parquet.tmp`` (a leading dot: ``pyarrow.dataset`` and
``ray.data.read_parquet`` skip it) and renamed to ``NAME.parquet`` when complete. The manifest is
the commit record: it is replaced atomically (temporary file + ``os.replace``) and lists a video's
shards only once *all* of them are renamed, so a killed ingest can be resumed (see
:func:`clean_uncommitted`). In an object store a shard is written to a local temporary file and
uploaded under its final name (an object appears only once complete), and the manifest is one
object replaced whole: the same commit protocol.

What catneuron writes into a dataset folder, and nothing else, is its own (:func:`survey`):
``_manifest.json``, ``_config.toml``, shards named ``PREFIX-NNNNN.parquet`` whose schema is
:func:`frame_schema`'s, and the temporaries of those names. A shard the manifest does not list
is an *orphan* of a killed run: removed on resume, and its video decoded again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.pause_points import pause_point

SCHEMA_VERSION = 2
MANIFEST = "_manifest.json"
RESOLVED_CONFIG = "_config.toml"  # the ingest's resolved job config, beside the dataset
SHARD_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"
# PREFIX-NNNNN.parquet as ShardWriter names them (the prefix: letters, digits, '_' and '-')
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*-[0-9]{5,}\.parquet")
# the temporary names of shards, of the manifest and config (pipeline.storage.write_bytes), and
# of the write check of an object store (pipeline.storage.check_location)
OWN_TEMPORARY = re.compile(rf"\.({SHARD_NAME.pattern}|_manifest\.json|_config\.toml)\.tmp"
                           r"|\.catneuron-write-check-[0-9a-f]{32}")


@dataclass(frozen=True)
class ShardConfig:
    """Shard bounds: at most ``max_rows`` frames and about ``max_bytes`` pixel bytes per file."""

    max_rows: int = 4096
    max_bytes: int = 128 << 20

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows={self.max_rows}: must be >= 1")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes={self.max_bytes}: must be >= 1")


def frame_schema(frame_bytes: int) -> pa.Schema:
    """Arrow schema of one shard whose frames have ``frame_bytes = H*W*C`` bytes."""
    return pa.schema(
        [
            ("source", pa.string()),
            ("frame_index", pa.int64()),
            ("timestamp_ms", pa.float64()),
            ("height", pa.int32()),
            ("width", pa.int32()),
            ("channels", pa.int32()),
            ("pixels", pa.binary(frame_bytes)),
        ]
    )


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """A complete shard: path relative to the dataset folder, row count, SHA-256."""

    path: str
    rows: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "sha256": self.sha256}


class ShardWriter:
    """Write one video's frames into shards ``{prefix}-00000.parquet``, ``-00001``, ...

    A context manager in the manner of ``datasets.ArrowWriter``: construct, :meth:`write` batches,
    :meth:`finalize` returns the complete shards. Each shard holds at most ``max_rows`` rows and
    about ``max_bytes`` pixel bytes; it is written under a dot-prefixed temporary name and renamed
    when complete. On an exception the temporary file is removed and nothing is committed.

    Parameters
    ----------
    root:
        Dataset folder (path or URI).
    prefix:
        File-name stem shared by this video's shards (unique per source).
    max_rows, max_bytes:
        Shard bounds; the effective row limit is ``min(max_rows, max_bytes // frame_bytes)``.
    """

    def __init__(
        self, root: str | Path, prefix: str, *, max_rows: int = 4096, max_bytes: int = 128 << 20
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError(f"max_rows={max_rows}, max_bytes={max_bytes}: both must be >= 1")
        self.root = str(root)
        self._staging = storage.staging_dir(self.root)  # the folder itself when local
        self._own_staging = not storage.is_local(self.root)
        self.prefix = prefix
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._schema: pa.Schema | None = None
        self._rows_per_shard = max_rows

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._pending, self._pending_rows = [], 0
            for tmp in self._staging.glob(f".{self.prefix}-*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
        if self._own_staging:
            shutil.rmtree(self._staging, ignore_errors=True)

    def write(
        self, source: str, pixels: np.ndarray, frame_index: np.ndarray, timestamp_ms: np.ndarray
    ) -> None:
        """Append frames: ``pixels`` uint8 (N, H, W, C), indices (N,), timestamps (N,)."""
        n, h, w, c = pixels.shape
        frame_bytes = h * w * c
        if self._schema is None:
            self._schema = frame_schema(frame_bytes)
            self._rows_per_shard = max(1, min(self.max_rows, self.max_bytes // frame_bytes))
        elif self._schema.field("pixels").type.byte_width != frame_bytes:
            raise ValueError(
                f"frame size changed within one video ({frame_bytes} bytes vs "
                f"{self._schema.field('pixels').type.byte_width}); use a fixed --input-size"
            )
        flat = np.ascontiguousarray(pixels).reshape(n * frame_bytes)  # (N*H*W*C,)
        pix = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(frame_bytes), n, [None, pa.py_buffer(flat)]
        )
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([source] * n, pa.string()),
                pa.array(frame_index, pa.int64()),
                pa.array(timestamp_ms, pa.float64()),
                pa.array(np.full(n, h, np.int32)),
                pa.array(np.full(n, w, np.int32)),
                pa.array(np.full(n, c, np.int32)),
                pix,
            ],
            schema=self._schema,
        )
        self._pending.append(batch)
        self._pending_rows += n
        while self._pending_rows >= self._rows_per_shard:
            self._flush(self._rows_per_shard)

    def finalize(self) -> list[ShardInfo]:
        """Write the last partial shard and return every shard of this writer."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        return list(self.shards)

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` pending rows as one shard (temp name, then rename). The
        Parquet bytes are built in memory (about ``max_bytes`` more) and hashed there, so the
        file is written once and never read back."""
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        head, rest = table.slice(0, rows), table.slice(rows)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows
        name = f"{self.prefix}-{len(self.shards):05d}{SHARD_SUFFIX}"
        tmp = self._staging / f".{name}{TMP_SUFFIX}"
        sink = pa.BufferOutputStream()
        pq.write_table(
            head,
            sink,
            row_group_size=rows,
            compression={"pixels": "NONE", "source": "SNAPPY", "frame_index": "SNAPPY",
                         "timestamp_ms": "SNAPPY", "height": "SNAPPY", "width": "SNAPPY",
                         "channels": "SNAPPY"},
            use_dictionary=["source"],
            write_statistics=["frame_index", "timestamp_ms"],
        )
        data = sink.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        with open(tmp, "wb") as f:
            f.write(data)
        pause_point("shard:before-publish")
        storage.publish_file(tmp, storage.join(self.root, name))
        pause_point("shard:published")
        self.shards.append(ShardInfo(name, rows, digest))


# --------------------------------------------------------------------------- manifest


def empty_manifest(options: dict[str, Any]) -> dict[str, Any]:
    """A new manifest: no shards, no videos."""
    return {"schema_version": SCHEMA_VERSION, "shards": [], "videos": [], "options": options}


class ManifestError(ValueError):
    """A ``_manifest.json`` that cannot be used as it is (damaged, another schema version, or a
    path that is not a plain file name inside the dataset folder)."""


def is_plain_name(name: Any) -> bool:
    """True for a file name with no folder part: not absolute, no ``/`` or ``\\``, not ``.``
    or ``..``, no NUL. Every path a manifest lists must be one (it names a file inside the
    dataset folder and nothing else)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name and not Path(name).is_absolute())


def check_manifest_paths(root: str | Path, manifest: dict[str, Any]) -> None:
    """ManifestError (touching nothing) unless every shard path in ``manifest`` (its shard list
    and each video's record) is a plain file name inside ``root``, and every record has the
    fields the readers index (a shard's ``path`` and ``rows``, a video's ``source``, ``status``
    and ``shards``, its ``bytes`` beside a ``sha256``)."""
    shards = manifest.get("shards")
    videos = manifest.get("videos")
    if not isinstance(shards, list) or not isinstance(videos, list):
        raise ManifestError(f"{storage.join(root, MANIFEST)}: 'shards' and 'videos' must be lists; "
                            "re-ingest into a new folder")
    bad = next((r for r in shards if not _is_shard_record(r)), None) or next(
        (r for r in videos if not _is_video_record(r)), None)
    if bad is not None:
        raise ManifestError(
            f"{storage.join(root, MANIFEST)} holds the record {str(bad)[:80]!r}, which lacks "
            "what a shard ('path', 'rows') or a video ('source', 'status', 'shards') records; "
            "the manifest was edited or damaged: nothing was changed, re-ingest into a new folder")
    names = [s.get("path") if isinstance(s, dict) else s for s in shards]
    names += [p for v in videos if isinstance(v, dict) for p in v.get("shards", [])]
    for name in names:
        if not is_plain_name(name):
            raise ManifestError(
                f"{storage.join(root, MANIFEST)} lists the shard {name!r}, which is not a plain "
                f"file name inside {root}; the manifest was edited or damaged: nothing was "
                "changed, re-ingest into a new folder")
    _check_consistent(root, manifest, [r["path"] for r in shards])


def _check_consistent(root: str | Path, manifest: dict[str, Any], listed: list[str]) -> None:
    """ManifestError unless each shard is listed once, every shard of a video committed as
    ``ok`` is listed (else a resumed ingest would delete it as a killed run's orphan), and
    ``options`` is a mapping. Linear in the records: every read of a manifest runs it."""
    problem = _inconsistency(manifest, listed)
    if problem:
        raise ManifestError(f"{storage.join(root, MANIFEST)} {problem}; the manifest was edited "
                            "or damaged: nothing was changed, re-ingest into a new folder")


def _inconsistency(manifest: dict[str, Any], listed: list[str]) -> str | None:
    """What :func:`_check_consistent` refuses, said as the rest of a sentence, or None."""
    seen: set[str] = set()
    for name in listed:
        if name in seen:
            return f"lists the shard {name!r} twice"
        seen.add(name)
    for video in manifest["videos"]:
        if video.get("status") == "ok":
            for name in video.get("shards", []):
                if name not in seen:
                    return f"has a committed video whose shard {name!r} it does not list"
    if not isinstance(manifest.get("options", {}), dict):
        return "has 'options' that are not a mapping"
    return None


def _is_shard_record(record: Any) -> bool:
    rows = record.get("rows") if isinstance(record, dict) else None
    return isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0


def _is_video_record(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("source"), str)
            and isinstance(record.get("status"), str)
            and isinstance(record.get("shards", []), list)
            and ("sha256" not in record or "bytes" in record))


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load ``root/_manifest.json`` and check that every path it lists stays inside ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` has no manifest (not a dataset, or an ingest that never committed a video).
    ManifestError
        If the manifest is not valid JSON, has another schema version, or lists a path that is
        not a plain file name (``../x``, ``/etc/x``, ``sub/x``).
    """
    path = storage.join(root, MANIFEST)
    if not storage.exists(path):
        raise FileNotFoundError(
            f"{root} is not a catneuron dataset (no {MANIFEST}); create one with "
            f"`catneuron ingest SOURCES --out {shlex.quote(str(root))}` or "
            f"`catneuron ingest --demo --out {shlex.quote(str(root))}`"
        )
    try:
        manifest = json.loads(storage.read_text(path))
    except json.JSONDecodeError as e:
        raise ManifestError(
            f"{path} is not valid JSON ({e}); re-run the ingest into a new folder"
        ) from e
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version == 1:
        manifest = upgrade_v1(manifest)
    elif version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version {version!r}, this catneuron reads {SCHEMA_VERSION}; "
            "re-ingest with this version"
        )
    check_manifest_paths(root, manifest)
    return manifest


# version 1 named the frame side, colour and shard bounds differently from the job config
_V1_SHARD_OPTIONS = {"shard_rows": "max_rows", "shard_bytes": "max_bytes"}


def upgrade_v1(manifest: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 manifest in schema 2: its ``options`` under the names of the ``[ingest]``
    config (``size`` -> ``input_size``, ``grey: bool`` -> ``channels: 1 | 3``,
    ``shard_rows``/``shard_bytes`` -> ``max_rows``/``max_bytes``); nothing else changed."""
    from pipeline.decode import renamed_options

    old = manifest.get("options")
    options = renamed_options(old) if isinstance(old, dict) else {}
    options = {_V1_SHARD_OPTIONS.get(k, k): v for k, v in options.items()}
    return {**manifest, "schema_version": SCHEMA_VERSION, "options": options}


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    """Replace ``root/_manifest.json`` atomically (locally: a temporary file, fsync,
    ``os.replace``; in an object store: one whole object)."""
    storage.write_text(storage.join(root, MANIFEST), json.dumps(manifest, indent=1))


def commit_video(
    manifest: dict[str, Any], record: dict[str, Any], shards: list[ShardInfo], *,
    replaces: bool = True,
) -> None:
    """Record one video's outcome and shards in ``manifest`` (in memory); replaces older records.
    ``replaces=False``: the caller knows ``manifest`` has no record of this source, and the
    O(n) search for one is skipped."""
    if replaces:
        old = [v for v in manifest["videos"] if v["source"] == record["source"]]
        old_paths = {p for v in old for p in v.get("shards", [])}
        manifest["videos"] = [v for v in manifest["videos"] if v["source"] != record["source"]]
        manifest["shards"] = [s for s in manifest["shards"] if s["path"] not in old_paths]
    record = dict(record, shards=[s.path for s in shards])
    manifest["videos"].append(record)
    manifest["shards"].extend(s.to_json() for s in shards)


def is_frame_shard(root: str | Path, name: str) -> bool:
    """Whether ``root/name`` is a shard catneuron wrote: its name is ``PREFIX-NNNNN.parquet`` and
    its schema is :func:`frame_schema`'s (any frame size). A file that cannot be read as Parquet
    is not one."""
    if not SHARD_NAME.fullmatch(name):
        return False
    try:
        with storage.open_input_file(storage.join(root, name)) as f:
            schema = pq.read_schema(f)
    except (OSError, pa.ArrowException):
        return False
    pixels = schema.field("pixels").type if "pixels" in schema.names else None
    if not isinstance(pixels, pa.FixedSizeBinaryType):
        return False
    return schema.equals(frame_schema(pixels.byte_width), check_metadata=False)


@dataclass(frozen=True)
class FolderContents:
    """The files directly inside a dataset folder, by owner (names, sorted).

    ``committed``: shards the manifest lists; ``orphans``: catneuron's shards it does not list
    (a killed run's); ``temporaries``: catneuron's temporary files; ``foreign``: anything
    catneuron did not write. The manifest and ``_config.toml`` are in none of them.
    """

    committed: list[str]
    orphans: list[str]
    temporaries: list[str]
    foreign: list[str]


def survey(root: str | Path, manifest: dict[str, Any] | None) -> FolderContents:
    """Sort the files of ``root`` by owner (``manifest``: its manifest, None when it has none)."""
    listed = {s["path"] for s in manifest["shards"]} if manifest else set()
    committed, orphans, temporaries, foreign = [], [], [], []
    for name in storage.list_files(root):
        if name in (MANIFEST, RESOLVED_CONFIG):
            continue
        if name in listed:
            committed.append(name)
        elif OWN_TEMPORARY.fullmatch(name):
            temporaries.append(name)
        elif is_frame_shard(root, name):
            orphans.append(name)
        else:
            foreign.append(name)
    return FolderContents(committed, orphans, temporaries, foreign)


def clean_uncommitted(root: str | Path, manifest: dict[str, Any]) -> list[str]:
    """Delete catneuron's temporary files and the shards ``manifest`` does not list (a killed
    run's orphans); files catneuron did not write are never touched.

    Returns the names removed. After this the folder holds, of catneuron's shards, exactly the
    committed ones, so a resumed ingest (which decodes again every video not committed as
    ``ok``, the orphans' included) has each frame once.
    """
    contents = survey(root, manifest)
    removed = sorted(contents.temporaries + contents.orphans)
    for name in removed:
        storage.delete(storage.join(root, name))
    return removed
