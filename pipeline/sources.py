"""Turn command-line sources into a list of videos to decode.

A source is a local video file; a folder (searched recursively for video extensions); a glob
(``clips/**/*.mp4``); a text file (``.txt``, ``.list``, ``.urls``) with one source per line and
``#`` comments; or a URL that yt-dlp handles (a YouTube video, playlist or channel,
``ytsearchN:query``, a direct http(s) link to a video file), fetched by :mod:`pipeline.fetch`.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .wmv .flv .ts .3gp .ogv".split()
)
LIST_EXTENSIONS = frozenset({".txt", ".list", ".urls"})
_URL = re.compile(r"^(https?|ftp)://|^[a-z]+search(\d+|all|date)?:", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """One item to ingest: a local video file (``path``) or a URL for yt-dlp (``url``).

    ``error`` is set for a source that could not be resolved (missing file, empty glob...).
    """

    name: str
    path: str | None = None
    url: str | None = None
    error: str | None = None


def is_url(text: str) -> bool:
    """True for http(s)/ftp URLs and yt-dlp search keys such as ``ytsearch5:cats``."""
    return bool(_URL.match(text.strip()))


def read_source_list(path: Path) -> list[str]:
    """Lines of a source-list file, without blank lines and ``#`` comments."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
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
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not files:
                out.append(Source(name=arg, error=f"folder has no video files ({_exts()})"))
            out += [Source(name=str(f.resolve()), path=str(f.resolve())) for f in files]
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            if _depth > 3:
                out.append(Source(name=arg, error="source lists nested more than 3 deep"))
                continue
            base = p.parent
            lines = [
                line if is_url(line) or Path(line).is_absolute() else str(base / line)
                for line in read_source_list(p)
            ]
            if not lines:
                out.append(Source(name=arg, error="source list is empty (only comments?)"))
            out += expand_sources(lines, _depth=_depth + 1)
        elif p.exists():
            out.append(Source(name=str(p.resolve()), path=str(p.resolve())))
        elif any(ch in arg for ch in "*?["):
            files = sorted(
                Path(f) for f in glob.glob(arg, recursive=True) if Path(f).is_file()
            )
            if not files:
                out.append(Source(name=arg, error="glob matched no files"))
            out += [Source(name=str(f.resolve()), path=str(f.resolve())) for f in files]
        else:
            out.append(
                Source(name=arg, error="no such file, folder or URL (URLs need http:// or https://)")
            )
    seen: set[str] = set()
    unique = []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique


def _exts() -> str:
    return " ".join(sorted(VIDEO_EXTENSIONS))
