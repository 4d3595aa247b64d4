"""Where a benchmark's figures go: printed as JSON, and written to ``--out`` when it is given
(its folder made), so every script's result file has the same form.

Every result records the command that made it and the machine it ran on (unless the script
recorded them itself), and is strict JSON: Python's ``json`` writes a NaN or an infinity as the
bare words ``NaN`` and ``Infinity``, which other readers refuse, so a non-finite figure is
written as ``null`` and named on stderr.

:func:`cli` runs a script's ``main`` through the jobs' error path, so that bad input (a missing
dataset or run, a bad argument or config) is one line on stderr, not a traceback."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path


def command_line(argv: list[str] | None = None) -> str:
    """``python`` and ``argv`` (default: this process's, the script first), quoted as a shell
    needs (``shlex.join``), so the recorded command runs again as it is."""
    return shlex.join(["python", *(sys.argv if argv is None else argv)])


def run_record() -> dict:
    """The command line (as typed, relative to the repository) and the machine, with the
    arithmetic its libraries chose (:func:`models.kernels.arithmetic.fingerprint`: figures
    from machines with other arithmetic need not agree bit for bit)."""
    from models.kernels.arithmetic import fingerprint

    return {"command": command_line(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "processor": platform.processor() or platform.machine(),
                        "arithmetic": fingerprint()}}


def finite(value, where: str = "", bad: list[str] | None = None):
    """``value`` with every NaN or infinite float replaced by None (its key path added to
    ``bad``)."""
    if isinstance(value, float) and not math.isfinite(value):
        if bad is not None:
            bad.append(where or "(the result)")
        return None
    if isinstance(value, dict):
        return {k: finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v, f"{where}[{i}]", bad) for i, v in enumerate(value)]
    return value


def emit(result: dict, out: str | Path | None, indent: int = 1) -> None:
    """Print ``result`` as JSON; write the same text to ``out`` unless it is None or empty."""
    bad: list[str] = []
    result = finite({**run_record(), **result}, bad=bad)
    if bad:
        print(f"non-finite figures written as null: {', '.join(bad)}", file=sys.stderr)
    text = json.dumps(result, indent=indent, allow_nan=False)
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def cli(main) -> int:
    """``main()``'s exit status, a user's error printed as one line ``SCRIPT: error: ...``
    (:func:`jobs.errors.run_main`; a missing file counts as one). Any other exception is a bug
    and keeps its traceback."""
    from jobs.errors import run_main, user_errors

    def body(_argv) -> int | None:
        with user_errors(FileNotFoundError):
            return main()

    return run_main(Path(sys.argv[0]).name, body, None)
