"""Training curves of a run (``RUN/metrics.jsonl``) as PNG line plots, one per quantity.

Each (stage, worker) of the run is one line against its step: the reconstruction error and the
free-energy gap (held-out minus training frames; a growing gap is overfitting, Hinton 2010,
section 6) show learning, frames/s the throughput.
"""

from __future__ import annotations

from pathlib import Path

from cluster.runlog import is_number, read_metrics
from jobs.report.plots import save_lines

CURVES = (("recon_error", "reconstruction error"), ("fe_gap", "free-energy gap"),
          ("frames_per_s", "frames/s"))


def series(records: list[dict], key: str) -> dict[str, list[tuple[float, float]]]:
    """``{"stage s worker w": [(step, value), ...]}`` for records carrying ``key``, in step
    order. A rollback or a resume computes the steps after its checkpoint again and logs them
    again: a step's later record replaces its earlier one, so no line turns back."""
    out: dict[str, dict[float, float]] = {}
    for rec in records:
        value, step = rec.get(key), rec.get("step")
        if all(map(is_number, (value, step))):
            worker = rec.get("worker")
            name = f"stage {rec.get('stage')}" + ("" if worker is None else f" worker {worker}")
            out.setdefault(name, {})[float(rec["step"])] = float(value)
    return {name: sorted(points.items()) for name, points in out.items()}


def write_training_curves(run: Path, out: Path) -> list[dict]:
    """Write ``out/curves/<key>.png`` for each quantity present; the index entries
    ``[{"title", "png"}]`` (paths relative to ``out``). No metrics file: no curves."""
    records = read_metrics(run)
    entries = []
    for key, title in CURVES:
        lines = series(records, key)
        if lines:
            png = f"curves/{key}.png"
            save_lines(out / png, lines, title=title, xlabel="step", ylabel=title)
            entries.append({"title": title, "png": png})
    return entries
