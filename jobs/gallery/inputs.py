"""What the gallery reads from a run folder, read defensively.

Every file the gallery uses comes from ``RUN/`` (``config.toml``, ``metrics.jsonl``,
``evaluation.json``, ``visualize/…``) or from the dataset's ``_manifest.json``. Any of them may be
missing, truncated or hostile: a missing or unreadable file becomes a line in
:attr:`RunInputs.missing` (shown on the page), never an exception. Paths read from JSON must be
plain relative paths that stay inside the run folder (no ``..``, no absolute path, no symlink
out of it) and name an image file that exists; anything else is refused and reported
(:func:`safe_file`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cluster.runlog import is_number as is_number  # re-exported: the pages test figures with it
from cluster.runlog import load_metrics

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

MANIFEST = "_manifest.json"
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


@dataclass
class RunInputs:
    """Everything the gallery shows, as read from the run folder (``None`` = missing)."""

    run_dir: Path
    config_text: str | None = None
    config: dict[str, Any] | None = None
    command: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    data_dir: Path | None = None
    manifest: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    vis_index: dict[str, Any] | None = None
    stages: dict[int, dict[str, Any]] = field(default_factory=dict)  # stage -> stage{k}.json
    missing: list[str] = field(default_factory=list)

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the dataset's frames: the model's square input
        (``model.input_size``; training checks the frames match it), None if unknown."""
        model = (self.config or {}).get("model")
        side = model.get("input_size") if isinstance(model, dict) else None
        return (side, side) if is_index(side) and side > 0 else None

    def note(self, text: str) -> None:
        """Record one missing or refused input (shown on the overview)."""
        self.missing.append(text)


#: Stage numbers and unit indices are below this (an int64 holds them): a longer number would
#: make a page's file name longer than the file system takes.
INDEX_LIMIT = 2**63


def is_index(x: Any) -> bool:
    """A non-negative int (not a bool) below :data:`INDEX_LIMIT`: stage numbers and unit
    indices used in file names."""
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < INDEX_LIMIT


def plain_relative(rel: Any) -> PurePosixPath | None:
    """``rel`` as a relative POSIX path with no ``..``, or None if it is anything else."""
    if not isinstance(rel, str) or not rel or len(rel) > 1000 or "\\" in rel or "\x00" in rel:
        return None
    parts = rel.split("/")  # before PurePosixPath, which would fold "a//b" and "./a"
    if any(part in ("", ".", "..") for part in parts) or rel.startswith("~"):
        return None
    return PurePosixPath(*parts)


def within(path: Path, root: Path) -> bool:
    """Whether ``path``, its symlinks resolved, lies inside ``root``: a link out of the run
    folder must not bring an outside file onto the pages."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def safe_file(folder: Path, rel: Any, root: Path) -> Path | None:
    """``folder/rel`` if ``rel`` is a plain relative path, the file exists inside ``root``
    (after resolving symlinks, :func:`within`) and starts like a PNG or JPEG; else None."""
    p = plain_relative(rel)
    if p is None:
        return None
    target = folder / p
    try:
        real = target.resolve(strict=True)
        if not within(real, root) or not real.is_file():
            return None
        with open(real, "rb") as f:
            head = f.read(8)
    except (OSError, RuntimeError):
        return None
    return target if head.startswith(_IMAGE_MAGIC) else None


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG from its IHDR chunk, None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if not head.startswith(_IMAGE_MAGIC[0]) or len(head) < 24:
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def read_json(path: Path, what: str, inputs: RunInputs, hint: str = "") -> dict | None:
    """``path`` as a JSON object, or None with a note saying why (missing, invalid, not an
    object)."""
    if not path.is_file():
        inputs.note(f"{what} missing: {path.name} not found{hint}")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        inputs.note(f"{what} unreadable: {path.name} is not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        inputs.note(f"{what} unreadable: {path.name} is not a JSON object")
        return None
    return data


def read_metrics(run_dir: Path, inputs: RunInputs) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (:func:`cluster.runlog.load_metrics`); a missing file
    or skipped lines are said in a note."""
    log = load_metrics(run_dir)
    if not log.found:
        inputs.note("training metrics missing: metrics.jsonl not found")
    if log.skipped:
        inputs.note(f"metrics.jsonl: {log.skipped} unreadable line(s) skipped")
    return log.records


def _read_config(inputs: RunInputs) -> None:
    """``config.toml`` as text and, if it parses, as a dict."""
    path = inputs.run_dir / "config.toml"
    if not path.is_file():
        inputs.note("run config missing: config.toml not found")
        return
    inputs.config_text = path.read_text(encoding="utf-8", errors="replace")
    try:
        inputs.config = tomllib.loads(inputs.config_text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        inputs.note(f"config.toml is not valid TOML ({exc})")


def _find_data_dir(inputs: RunInputs) -> Path | None:
    """The dataset folder named by ``data.path``: as given (absolute or from the current
    folder), else a sibling of the run folder with the same name."""
    data = (inputs.config or {}).get("data")
    raw = data.get("path") if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw or "://" in raw or "\x00" in raw:
        inputs.note(f"dataset not shown: data.path {raw!r} is not a local folder")
        return None
    given = Path(raw)
    for candidate in (given, inputs.run_dir.parent / given.name):
        if (candidate / MANIFEST).is_file():
            return candidate
    inputs.note(f"dataset manifest missing: {raw}/{MANIFEST} not found")
    return None


def _read_visualize(inputs: RunInputs) -> None:
    """``visualize/index.json`` and every ``stage{k}.json`` it lists (an entry whose file is
    not a plain relative path staying inside the run folder, links resolved, is refused)."""
    vis = inputs.run_dir / "visualize"
    inputs.vis_index = read_json(vis / "index.json", "visualisation", inputs,
                                 f"; run 'catneuron visualize --run {inputs.run_dir}'")
    entries = (inputs.vis_index or {}).get("stages")
    for entry in entries if isinstance(entries, list) else []:
        stage = entry.get("stage") if isinstance(entry, dict) else None
        rel = plain_relative(entry.get("file")) if isinstance(entry, dict) else None
        if not is_index(stage) or rel is None or not within(vis / rel, inputs.run_dir):
            inputs.note(f"visualize/index.json: stage entry refused ({entry!r:.80})")
            continue
        data = read_json(vis / rel, f"stage {stage} visualisation", inputs)
        if data is not None:
            inputs.stages[stage] = data


def load_run(run_dir: Path) -> RunInputs:
    """Read every gallery input of ``run_dir``; never raises for missing or bad files."""
    inputs = RunInputs(run_dir=Path(run_dir))
    _read_config(inputs)
    command = inputs.run_dir / "command.txt"
    if command.is_file():
        inputs.command = command.read_text(encoding="utf-8", errors="replace").strip()
    inputs.metrics = read_metrics(inputs.run_dir, inputs)
    if inputs.config is not None:
        inputs.data_dir = _find_data_dir(inputs)
    if inputs.data_dir is not None:
        inputs.manifest = read_json(inputs.data_dir / MANIFEST, "dataset manifest", inputs)
    inputs.evaluation = read_json(inputs.run_dir / "evaluation.json", "evaluation", inputs,
                                  f"; run 'catneuron evaluate --run {inputs.run_dir}'")
    _read_visualize(inputs)
    return inputs
