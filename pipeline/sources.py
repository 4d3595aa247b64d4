"""Turn command-line sources into a list of videos to decode.

A source is a local video file; a folder (searched recursively for video extensions); a glob
(``clips/**/*.mp4``); a text file (``.txt``, ``.list``, ``.urls``) with one source per line and
``#`` comments; or a URL that yt-dlp handles (a YouTube video, playlist or channel,
``ytsearchN:query``, a direct http(s) link to a video file), fetched by :mod:`pipeline.fetch`.

A local video's ``name`` is its path relative to the source that was given (``clips/a/x.mp4`` for
a file found in the folder ``clips``, ``x.mp4`` for a file given by itself), never an absolute
path, so a dataset still recognises its sources after the folders are moved or copied; the
ingest adds the file's size and content hash (:func:`file_identity`). Symlinked folders inside a
source folder are not followed (a link can point anywhere, or back up the tree); each one is
returned as a :class:`Source` with a ``note`` so the summary says it was skipped.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.shards import sha256_file

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .wmv .flv .ts .3gp .ogv".split()
)
LIST_EXTENSIONS = frozenset({".txt", ".list", ".urls"})
_URL = re.compile(r"^(https?|ftp)://|^[a-z]+search(\d+|all|date)?:", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """One item to ingest: a local video file (``path``) or a URL for yt-dlp (``url``).

    ``error`` is set for a source that could not be resolved (missing file, empty glob...);
    ``note`` for something deliberately skipped (a symlinked folder), said in the summary.
    """

    name: str
    path: str | None = None
    url: str | None = None
    error: str | None = None
    note: str | None = None


def file_identity(path: str | Path) -> tuple[int, str]:
    """(size in bytes, hex SHA-256) of a file: what makes two copies of a video the same."""
    return os.path.getsize(path), sha256_file(path)


def _under(root: Path, f: Path) -> str:
    """``f``'s name relative to the given ``root``, led by the root folder's own name."""
    base = root.resolve().name
    rel = f.relative_to(root).as_posix()
    return f"{base}/{rel}" if base else rel


def _folder(arg: str, p: Path) -> list[Source]:
    """The video files under folder ``p`` (recursively); symlinked sub-folders as notes."""
    found = sorted(p.rglob("*"))
    files = [f for f in found if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS]
    links = [d for d in found if d.is_symlink() and d.is_dir()]
    out = [Source(name=_under(p, f), path=str(f.resolve())) for f in files]
    out += [Source(name=_under(p, d), note="symlinked folder, not followed: give it as its "
                   "own source to ingest it") for d in links]
    if not files:
        out.insert(0, Source(name=arg, error=f"folder has no video files ({_exts()})"))
    return out


def _glob(arg: str) -> list[Source]:
    """Files matching ``arg``, named relative to its longest wildcard-free folder."""
    files = sorted(Path(f) for f in glob.glob(arg, recursive=True) if Path(f).is_file())
    if not files:
        return [Source(name=arg, error="glob matched no files")]
    static = []
    for part in Path(arg).parts:
        if any(ch in part for ch in "*?["):
            break
        static.append(part)
    root = Path(*static) if static else Path(".")
    return [Source(name=_under(root, f), path=str(f.resolve())) for f in files]


def is_url(text: str) -> bool:
    """True for http(s)/ftp URLs and yt-dlp search keys such as ``ytsearch5:cats``."""
    return bool(_URL.match(text.strip()))


def read_source_list(path: Path) -> list[str]:
    """Lines of a source-list file, without blank lines and ``#`` comments. UTF-8, with or
    without the byte-order mark Windows editors put first (``utf-8-sig``): it is no part of
    the first source."""
    out = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def expand_sources(args: list[str], *, _depth: int = 0) -> list[Source]:
    """Resolve ``args`` into :class:`Source` items, in order, without duplicates."""
    out: list[Source] = []
    for arg in args:
        arg = arg.strip()
        if not arg:
            continue
        if is_url(arg):
            out.append(Source(name=arg, url=arg))
            continue
        p = Path(arg).expanduser()
        if p.is_dir():
            out += _folder(arg, p)
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            if _depth > 3:
                out.append(Source(name=arg, error="source lists nested more than 3 deep"))
                continue
            base = p.parent
            lines = [
                line if is_url(line) or Path(line).expanduser().is_absolute() else str(base / line)
                for line in read_source_list(p)
            ]
            if not lines:
                out.append(Source(name=arg, error="source list is empty (only comments?)"))
            out += expand_sources(lines, _depth=_depth + 1)
        elif p.is_file():
            out.append(Source(name=p.name, path=str(p.resolve())))
        elif p.exists():  # a named pipe or a device: reading it could wait forever
            out.append(Source(name=arg, error="not a regular file (a named pipe or a device): "
                              "give a video file, a folder, a source list or a URL"))
        elif any(ch in arg for ch in "*?["):
            out += _glob(arg)
        else:
            out.append(
                Source(name=arg, error="no such file, folder or URL (URLs need http:// or https://)")
            )
    seen: set[str] = set()
    unique = []
    for s in out:  # one entry per file (a file reached twice keeps its first name)
        key = s.path or s.url or s.name
        if key not in seen:
            seen.add(key)
            unique.append(s)
    return unique


def _exts() -> str:
    return " ".join(sorted(VIDEO_EXTENSIONS))
