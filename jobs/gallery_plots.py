"""The gallery's own figures, drawn with matplotlib's Agg backend into PNG files.

Three kinds: training curves from ``metrics.jsonl`` (when ``catneuron visualize`` has not drawn
them), a unit's response histogram per probe class (from ``evaluation.json``'s shared bin edges
and per-class counts), and invariance curves (when only their numbers are given). Each function
returns the path it wrote, or None when its input holds nothing drawable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.gallery_inputs import is_number

CURVE_KEYS = (("recon_error", "reconstruction error"), ("fe_gap", "free-energy gap"))


def _figure(width: float = 5.0, height: float = 3.0):
    """A new Agg figure and axes (no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def curve_series(metrics: Sequence[Mapping[str, Any]], key: str) -> dict[int, list[tuple]]:
    """stage -> [(step, mean of ``key`` over the workers logging that step)], sorted by step."""
    sums: dict[int, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in metrics:
        stage, step, value = rec.get("stage"), rec.get("step"), rec.get(key)
        if isinstance(stage, int) and is_number(step) and is_number(value):
            sums[stage][step].append(float(value))
    return {s: sorted((step, sum(v) / len(v)) for step, v in steps.items())
            for s, steps in sorted(sums.items())}


def plot_curve(metrics: Sequence[Mapping[str, Any]], key: str, title: str,
               path: Path) -> Path | None:
    """``key`` against the step, one line per stage."""
    series = curve_series(metrics, key)
    if not series:
        return None
    fig, ax = _figure()
    for stage, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"stage {stage}")
    ax.set(xlabel="step", ylabel=title, title=title)
    ax.legend()
    return _save(fig, path)


def plot_histogram(edges: Sequence[float], counts: Mapping[str, Sequence[float]], title: str,
                   path: Path) -> Path | None:
    """Per-class response histograms on shared bin ``edges`` (len(counts[c]) = len(edges) - 1),
    each normalised to a fraction of its class so unbalanced classes compare."""
    edges = [float(e) for e in edges if is_number(e)]
    classes = {str(name): [float(c) for c in cs] for name, cs in counts.items()
               if isinstance(cs, list) and len(cs) == len(edges) - 1 and all(map(is_number, cs))}
    if len(edges) < 2 or not classes:
        return None
    fig, ax = _figure()
    for name, cs in classes.items():
        total = sum(cs) or 1.0
        ax.stairs([c / total for c in cs], edges, label=name[:40])
    ax.set(xlabel="response", ylabel="fraction of class", title=title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_invariance(curves: Mapping[str, Any], path: Path) -> Path | None:
    """One panel per transformation: the response against the scale, angle or shift."""
    panels = {name: pts for name, pts in curves.items() if isinstance(pts, list) and pts
              and all(isinstance(p, list) and len(p) == 2 and all(map(is_number, p))
                      for p in pts)}
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(panels), 2.8), dpi=100)
    FigureCanvasAgg(fig)
    for k, (name, pts) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set(xlabel=str(name)[:30], ylabel="response" if k == 0 else None)
    return _save(fig, path)
