"""Dataset and run folders as local paths or URIs, so every node of a cluster reaches them.

A *location* is a local path (``runs/demo/data``) or a URI that ``pyarrow.fs`` understands
(``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///abs/path``), the way Ray takes its
``storage_path``. S3 reads the usual AWS settings: credentials (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, a profile, or an instance role), ``AWS_DEFAULT_REGION``, and
``AWS_ENDPOINT_URL`` for S3-compatible stores (MinIO, Ceph, moto), which pyarrow honours.

Publishing is atomic on both kinds of storage, which is what the dataset's commit protocol
(shards first, then the manifest that lists them) and the checkpoints' ``LATEST`` pointer rely
on: a local file is written under a temporary name, fsynced and renamed over the target; an
object store shows an object only once its upload has completed, so readers see the old object
or the whole new one, never a part.

A URI is used as written, with these rules: no ``.`` or ``..`` segment (pyarrow's paths are
abstract paths without them, and an object store has no folder to climb, so
``s3://b/runs/../x`` would silently mean some other prefix), and an object-store URI names its
bucket and has no empty path component (``s3://``, ``s3:///x``, ``s3://b/a//x``, which pyarrow
refuses in its own words): :class:`LocationError`. A local path is made absolute once, in
:func:`resolve` (``os.path.abspath``), the same for every operation. :func:`check_location`
asks an object store, before any work, whether the bucket exists and takes writes, so a wrong
bucket is one line instead of a failure after the work.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from pipeline.pause_points import pause_point

TMP_SUFFIX = ".tmp"


class LocationError(ValueError):
    """A location that cannot be used as given (a ``..`` in a URI, no bucket or an empty path
    component in an object-store URI, a bucket that does not exist or refuses writes); the
    message is one line naming the location and the fix."""


def is_uri(location: str | os.PathLike) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://...``) rather than a path."""
    return "://" in str(location)


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a location. Settings come from the environment (query
    strings in URIs are not supported: use the AWS_* variables)."""
    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), os.path.abspath(text)
    scheme, rest = text.split("://", 1)
    if any(part in (".", "..") for part in rest.split("/")):
        raise LocationError(
            f"{text}: a URI may not hold '.' or '..' segments (an object store has no folders "
            "to climb, so it would name another prefix): write the prefix in full")
    if scheme in OBJECT_STORES:
        check_object_uri(text)
        bucket = rest.split("/", 1)[0]
        return _filesystem(f"{scheme}://{bucket}", os.environ.get("AWS_ENDPOINT_URL")), \
            rest.rstrip("/")
    return pafs.FileSystem.from_uri(text)


OBJECT_STORES = ("s3", "gs", "gcs")


def check_object_uri(uri: str) -> None:
    """:class:`LocationError` unless an object-store URI names its bucket and has no empty path
    component (``s3://``, ``s3:///x``, ``s3://b/a//x``); one trailing ``/`` is allowed."""
    scheme, rest = uri.split("://", 1)
    if not rest.split("/", 1)[0]:
        raise LocationError(f"{uri}: the URI names no bucket: write {scheme}://BUCKET/PREFIX")
    parts = (rest[:-1] if rest.endswith("/") else rest).split("/")
    if "" in parts:
        raise LocationError(f"{uri}: the URI has an empty path component ('//'); did you mean "
                            f"{scheme}://{'/'.join(p for p in parts if p)}?")


@functools.lru_cache(maxsize=16)
def _filesystem(bucket_uri: str, endpoint: str | None) -> pafs.FileSystem:
    """One filesystem object per bucket (and endpoint) per process: it holds a connection
    pool and its credentials."""
    filesystem, _ = pafs.FileSystem.from_uri(bucket_uri)
    return filesystem


def join(location: str | os.PathLike, *names: str) -> str:
    """``location/name/...`` (``/`` inside URIs, the OS's separator for paths)."""
    text = str(location)
    if is_uri(text):
        return "/".join([text.rstrip("/"), *(n.strip("/") for n in names)])
    return os.path.join(text, *names)


def is_local(location: str | os.PathLike) -> bool:
    """Whether a location is on this machine's filesystem (a path or a ``file://`` URI)."""
    return not is_uri(location) or str(location).startswith("file://")


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a local location (ValueError for an object store)."""
    if not is_local(location):
        raise ValueError(f"{location} is not on the local filesystem")
    return Path(resolve(location)[1])


# ---------------------------------------------------------------------------- reading
def exists(location: str | os.PathLike) -> bool:
    """Whether a file (object) exists at ``location``."""
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type == pafs.FileType.File


def read_bytes(location: str | os.PathLike) -> bytes:
    """The whole file; FileNotFoundError naming the location if there is none."""
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{location}: no such file")
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode("utf-8")


def _names(location: str | os.PathLike, *kinds: pafs.FileType) -> list[str]:
    """Names of the entries of ``kinds`` directly inside a folder (prefix), sorted; [] if there
    is none (one listing)."""
    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    return sorted(i.base_name for i in filesystem.get_file_info(selector) if i.type in kinds)


def list_dirs(location: str | os.PathLike) -> list[str]:
    """Names of the folders (prefixes) directly inside a folder, sorted; [] if there is none."""
    return _names(location, pafs.FileType.Directory)


def list_files(location: str | os.PathLike) -> list[str]:
    """Names of the files directly inside a folder (prefix), sorted; [] if there is none."""
    return _names(location, pafs.FileType.File)


def list_entries(location: str | os.PathLike) -> list[str]:
    """Names of the files and folders directly inside a folder, sorted (one listing)."""
    return _names(location, pafs.FileType.File, pafs.FileType.Directory)


def open_input_file(location: str | os.PathLike):
    """A seekable binary file (what ``pyarrow.parquet.ParquetFile`` reads)."""
    filesystem, path = resolve(location)
    return filesystem.open_input_file(path)


# ---------------------------------------------------------------------------- writing
def makedirs(location: str | os.PathLike) -> None:
    """Create a local folder and its parents (object stores have no folders: nothing to do)."""
    if is_local(location):
        local_path(location).mkdir(parents=True, exist_ok=True)


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Publish ``data`` at ``location`` atomically (see the module docstring)."""
    if not is_local(location):
        filesystem, path = resolve(location)
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
        return
    target = local_path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    pause_point(f"write:{target.name}")
    os.replace(tmp, target)


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def publish_file(local_file: str | os.PathLike, location: str | os.PathLike) -> None:
    """Move a finished local file to ``location`` atomically: a rename on this machine, an
    upload (then the local file is removed) to an object store.

    The upload goes to a temporary key beside the target (``.NAME.tmp``, the name a local
    publish uses) and is then copied to the target on the server, which shows the object whole
    or not at all: an upload cut short (Ctrl-C between its chunks, a failed write) would
    otherwise be completed by the stream's close as a short object under the final name. A cut
    upload's temporary is deleted, or, when even that fails, left as one of catneuron's
    temporaries (:data:`pipeline.shards.OWN_TEMPORARY`)."""
    if is_local(location):
        os.replace(local_file, local_path(location))
        return
    filesystem, path = resolve(location)
    folder, _, name = path.rpartition("/")
    tmp = f"{folder}/.{name}{TMP_SUFFIX}"
    try:
        with open(local_file, "rb") as src, filesystem.open_output_stream(tmp) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        filesystem.move(tmp, path)  # a server-side copy, then the temporary's deletion
    except BaseException:
        try:
            filesystem.delete_file(tmp)
        except OSError:  # already gone, or the store cannot be reached
            pass
        raise
    os.unlink(local_file)


def delete(location: str | os.PathLike) -> None:
    """Remove a file; no error if it is already gone."""
    filesystem, path = resolve(location)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        pass


def delete_tree(location: str | os.PathLike) -> None:
    """Delete a folder (a prefix of an object store) and everything under it."""
    filesystem, path = resolve(location)
    try:
        filesystem.delete_dir(path)
    except FileNotFoundError:
        pass


def staging_dir(location: str | os.PathLike) -> Path:
    """A local folder where files bound for ``location`` are written before they are published:
    the folder itself when it is local (so publishing is a rename), else a fresh temporary
    folder on this machine."""
    if is_local(location):
        path = local_path(location)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="catneuron-staging-"))


# ---------------------------------------------------------------------------- checking
def check_location(location: str | os.PathLike, *, write: bool = False) -> None:
    """Raise :class:`LocationError` (one line) unless ``location`` can be used: a URI without
    ``.``/``..`` segments, and for an object store a bucket that exists and, with ``write``,
    accepts an object (a small one is written and deleted under the prefix); a local folder,
    with ``write``, that is a folder or can be made one and takes a file (what this makes is
    removed again). Called by every job before it does any work."""
    try:
        filesystem, path = resolve(location)  # an object store's: its region looked up
    except OSError as exc:
        raise _unreachable(location, exc) from None
    if is_local(location):
        if write:
            _check_local_folder(location, Path(path))
        return
    bucket = path.split("/", 1)[0]
    try:
        info = filesystem.get_file_info(bucket)
    except OSError as exc:
        raise _unreachable(location, exc) from None
    at = _endpoint()
    if info.type == pafs.FileType.NotFound:
        raise LocationError(f"{location}: the bucket {bucket!r} does not exist{at}: create it "
                            "or correct the URI")
    if write:
        probe = f"{path.rstrip('/')}/.catneuron-write-check-{uuid.uuid4().hex}"
        try:
            with filesystem.open_output_stream(probe) as stream:
                stream.write(b"catneuron write check\n")
            filesystem.delete_file(probe)
        except OSError as exc:
            raise LocationError(f"{location}: cannot write into the bucket {bucket!r}{at} "
                                f"({_one_line(exc)}): check the credentials' permissions "
                                "or choose another location") from None


def _endpoint() -> str:
    """`` at ENDPOINT`` when AWS_ENDPOINT_URL names the store, else ``""``."""
    where = os.environ.get("AWS_ENDPOINT_URL")
    return f" at {where}" if where else ""


def _unreachable(location: str | os.PathLike, exc: OSError) -> LocationError:
    """The one line for an object store that does not answer: pyarrow's lookup of the bucket
    (or, without AWS_ENDPOINT_URL, of its region) failed."""
    bucket = str(location).split("://", 1)[-1].split("/", 1)[0]
    return LocationError(f"{location}: cannot reach the bucket {bucket!r}{_endpoint()} "
                         f"({_one_line(exc)}): check the URI, AWS_ENDPOINT_URL and the "
                         "credentials (AWS_* settings)")


def _check_local_folder(location: str | os.PathLike, path: Path) -> None:
    """LocationError unless ``path`` is, or can be made, a folder that takes a file: a probe
    file is written and deleted, and the folders made for it are removed again."""
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".catneuron-write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"catneuron write check\n")
        probe.unlink()
    except OSError as exc:
        raise LocationError(f"{location}: cannot write a folder there ({_one_line(exc)}): "
                            "choose another location") from None
    finally:
        for folder in made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
