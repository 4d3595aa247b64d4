"""Where a benchmark's figures go: printed as JSON, and written to ``--out`` when it is given
(its folder made), so every script's result file has the same form."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | Path | None, indent: int = 1) -> None:
    """Print ``result`` as JSON; write the same text to ``out`` unless it is None or empty."""
    text = json.dumps(result, indent=indent)
    print(text)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
