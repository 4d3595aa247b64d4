"""Fetch videos from URLs with yt-dlp's Python API (``yt_dlp.YoutubeDL``).

Safety and re-runs:

* files are named ``%(extractor_key)s-%(id)s.%(ext)s`` (never the title) with
  ``restrictfilenames``/``windowsfilenames``, and each final path is checked to lie inside the
  download folder, so a title or id like ``../../x`` or ``<script>`` cannot escape it; a file
  that ``index.json`` lists counts only as a plain file name of that folder;
* no post-processors run (no ffmpeg merge, no ``--exec``): formats are single files;
* a per-video filter bounds duration (``match_filter``) and size (``max_filesize``);
* ``download_archive`` (``archive.txt`` in the download folder) makes a re-run skip what it
  fetched; ``index.json`` beside it remembers which files each URL gave, so an ingest killed
  after a download but before decoding still finds the file on the next run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.shards import is_plain_name

ARCHIVE = "archive.txt"
INDEX = "index.json"


@dataclass(frozen=True)
class FetchConfig:
    """Per-video bounds for downloads.

    Attributes
    ----------
    max_duration_s:
        Skip videos longer than this (videos of unknown duration pass).
    max_filesize:
        Skip (abort) downloads larger than this many bytes.
    max_videos:
        At most this many entries from a playlist, channel or search.
    format:
        yt-dlp format selector; single-file formats only (no merging post-processor).
    socket_timeout:
        Seconds before a stalled connection fails.
    """

    max_duration_s: float = 1800.0
    max_filesize: int = 500 << 20
    max_videos: int = 50
    format: str = "best[height<=720][vcodec!=none]/best[vcodec!=none]/best"
    socket_timeout: float = 15.0

    def __post_init__(self) -> None:
        for name in ("max_duration_s", "max_filesize", "max_videos", "socket_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value}: must be a positive number")


@dataclass(frozen=True)
class Fetched:
    """A downloaded video: ``source`` (its page URL), ``path`` (local file)."""

    source: str
    path: str


class FetchError(RuntimeError):
    """A URL that gave no video; the message says why and what to do."""


class _Logger:
    """Collects yt-dlp's messages instead of printing them."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.skipped: list[str] = []

    def debug(self, msg: str) -> None:
        if "does not pass filter" in msg or "larger than max-filesize" in msg:
            self.skipped.append(msg.strip())

    def info(self, msg: str) -> None:
        self.debug(msg)

    def warning(self, msg: str) -> None:
        self.debug(msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg.replace("ERROR: ", "", 1))


def ydl_options(dest: Path, config: FetchConfig, logger: Any = None) -> dict[str, Any]:
    """The ``YoutubeDL`` parameters used for every download (exposed for tests)."""
    from yt_dlp.utils import match_filter_func

    return {
        "paths": {"home": str(dest), "temp": str(dest)},
        "outtmpl": {"default": "%(extractor_key)s-%(id)s.%(ext)s"},
        "restrictfilenames": True,
        "windowsfilenames": True,
        "trim_file_name": 120,
        "download_archive": str(dest / ARCHIVE),
        "match_filter": match_filter_func(f"duration <=? {config.max_duration_s:g}"),
        "max_filesize": config.max_filesize,
        "playlistend": config.max_videos,
        "format": config.format,
        "postprocessors": [],
        "ignoreerrors": True,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": logger,
        "socket_timeout": config.socket_timeout,
        "retries": 1,
        "fragment_retries": 1,
        "extractor_retries": 0,
        "overwrites": False,
        "writethumbnail": False,
        "writesubtitles": False,
        "writeinfojson": False,
        "color": {"stderr": "never", "stdout": "never"},
    }


def _downloads(info: Any) -> list[tuple[str, str]]:
    """(page URL, file path) for every downloaded entry of an extract_info result."""
    if not isinstance(info, dict):
        return []
    if info.get("entries") is not None:
        return [d for e in info["entries"] for d in _downloads(e)]
    out = []
    for req in info.get("requested_downloads") or []:
        path = req.get("filepath") or req.get("_filename")
        if path:
            out.append((info.get("webpage_url") or info.get("original_url") or "", path))
    return out


def _read_index(dest: Path) -> dict[str, list[list[str]]]:
    try:
        index = json.loads((dest / INDEX).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return index if isinstance(index, dict) else {}


def _known(index: dict, url: str, root: Path) -> list[tuple[str, str]]:
    """(page URL, file path) of ``url``'s earlier downloads that ``index.json`` lists and that
    are still there. Only a plain file name of the download folder counts: an entry naming a
    path elsewhere (absolute, ``..``, through a link) is not returned."""
    out = []
    entries = index.get(url)
    for entry in entries if isinstance(entries, list) else []:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and is_plain_name(entry[1])):
            continue
        path = (root / entry[1]).resolve()
        if path.is_file() and path.is_relative_to(root):
            out.append((entry[0], str(path)))
    return out


def _write_index(dest: Path, index: dict[str, list[list[str]]]) -> None:
    """Atomic replace of ``index.json``."""
    tmp = dest / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, dest / INDEX)


def fetch(url: str, dest: str | Path, config: FetchConfig = FetchConfig()) -> list[Fetched]:
    """Download the video(s) behind ``url`` into ``dest`` and return the local files.

    Files fetched by an earlier call for the same ``url`` are returned again (from
    ``index.json``) without downloading.

    Raises
    ------
    FetchError
        If the URL gave no video (unreachable, not a video page, filtered out), with yt-dlp's
        reason.
    """
    import yt_dlp

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    index = _read_index(dest)
    known = _known(index, url, root)
    logger = _Logger()
    try:
        with yt_dlp.YoutubeDL(ydl_options(dest, config, logger)) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as e:  # raised despite ignoreerrors for some failures
        logger.errors.append(str(e).replace("ERROR: ", "", 1))
        info = None
    found: list[tuple[str, str]] = []
    for source, path in _downloads(info):
        p = Path(path).resolve()
        if not p.is_file():  # aborted (e.g. larger than max_filesize) or failed mid-way
            continue
        if not p.is_relative_to(root):  # defence in depth; the template should prevent this
            p.unlink(missing_ok=True)
            logger.errors.append(f"refused a file name outside the download folder: {path!r}")
            continue
        found.append((source or url, str(p)))
    if found:
        rel = {(s, str(Path(p).relative_to(root))) for s, p in known}
        rel |= {(s, str(Path(p).relative_to(root))) for s, p in found}
        index[url] = sorted([list(x) for x in rel])
        _write_index(dest, index)
    merged = {p: s for s, p in known}
    merged.update({p: s for s, p in found})
    if merged:
        return [Fetched(source=s, path=p) for p, s in merged.items()]
    if logger.errors:
        raise FetchError(f"could not fetch {url}: {_first_line(logger.errors[0])}")
    if logger.skipped:
        raise FetchError(
            f"{url}: skipped by the per-video limits ({_first_line(logger.skipped[0])}); "
            "raise --max-duration / --max-filesize to include it"
        )
    raise FetchError(
        f"{url}: yt-dlp found no video to download (already in {dest / ARCHIVE} but the file is "
        "gone? delete its line there and retry)"
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "unknown error"
