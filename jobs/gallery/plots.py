"""The gallery's own figures.

Training curves from ``metrics.jsonl`` (when ``catneuron visualize`` has not drawn them) and
invariance curves (when only their numbers are given) are checked here and drawn by
:mod:`jobs.report.plots` (the one place figures are drawn) into PNG files; those functions
return the path they wrote, or None when the input holds nothing drawable. A unit's response
histogram per probe class (from ``evaluation.json``'s shared bin edges and per-class counts) is
an inline SVG described by :func:`histogram_svg`: there is one per ranked unit, and a PNG costs
a second of matplotlib each where the SVG costs nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.gallery.inputs import is_number
from jobs.report.plots import save_invariance, save_lines

CURVE_KEYS = (("recon_error", "reconstruction error"), ("fe_gap", "free-energy gap"))


def curve_series(metrics: Sequence[Mapping[str, Any]], key: str) -> dict[int, list[tuple]]:
    """stage -> [(step, mean of ``key`` over the workers logging that step)], sorted by step.
    A rollback or a resume computes the steps after its checkpoint again and logs them again:
    a worker's later record of a step replaces its earlier one (as in the training curves of
    :func:`jobs.report.training_curves.series`), so an abandoned run's figures are not
    averaged in."""
    latest: dict[int, dict[float, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    for rec in metrics:
        stage, step, value = rec.get("stage"), rec.get("step"), rec.get(key)
        if isinstance(stage, int) and is_number(step) and is_number(value):
            latest[stage][step][str(rec.get("worker"))] = float(value)
    return {s: sorted((step, sum(v.values()) / len(v)) for step, v in steps.items())
            for s, steps in sorted(latest.items())}


def plot_curve(metrics: Sequence[Mapping[str, Any]], key: str, title: str,
               path: Path) -> Path | None:
    """``key`` against the step, one line per stage."""
    series = curve_series(metrics, key)
    if not series:
        return None
    return save_lines(path, {f"stage {stage}": points for stage, points in series.items()},
                      title=title, xlabel="step", ylabel=title)


#: Line colours of the histogram classes, in order (matplotlib's tab10).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SVG_SIZE, SVG_MARGIN = (360, 170), (44, 10, 10, 24)  # (width, height); (left, top, right, bottom)


def histogram_svg(edges: Sequence[float], counts: Mapping[str, Sequence[float]]) -> dict | None:
    """Per-class response histograms on shared bin ``edges`` (len(counts[c]) = len(edges) - 1)
    as an SVG view: each class normalised to a fraction of its members, so unbalanced classes
    compare, drawn as a step line. None when nothing is drawable; a class whose total, or
    edges whose span, overflow a float (a damaged file) are not drawable.

    Returns ``{"width", "height", "series": [{"name", "colour", "total", "points"}], "axes",
    "ticks": [{"x", "y", "label"}]}``; ``points`` is an SVG ``polyline`` point list.
    """
    edges = [float(e) for e in edges if is_number(e)]
    classes = {str(name): [float(c) for c in cs] for name, cs in counts.items()
               if isinstance(cs, list) and len(cs) == len(edges) - 1 and all(map(is_number, cs))
               and is_number(sum(cs))}
    if len(edges) < 2 or not is_number(edges[-1] - edges[0]) or edges[-1] <= edges[0] or (
            not classes):
        return None
    (w, h), (left, top, right, bottom) = SVG_SIZE, SVG_MARGIN
    fractions = {n: [c / (sum(cs) or 1.0) for c in cs] for n, cs in classes.items()}
    y_max = max(max(f) for f in fractions.values()) or 1.0

    def x(e: float) -> float:
        return left + (e - edges[0]) / (edges[-1] - edges[0]) * (w - left - right)

    def y(f: float) -> float:
        return h - bottom - f / y_max * (h - top - bottom)

    series = []
    for k, (name, fs) in enumerate(fractions.items()):
        pts = [(x(edges[0]), y(0.0))]
        for i, f in enumerate(fs):
            pts += [(x(edges[i]), y(f)), (x(edges[i + 1]), y(f))]
        pts.append((x(edges[-1]), y(0.0)))
        series.append({"name": name[:60], "colour": COLOURS[k % len(COLOURS)],
                       "total": int(sum(classes[name])),
                       "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)})
    axes = f"{left},{top} {left},{h - bottom} {w - right},{h - bottom}"
    ticks = [{"x": f"{x(e):.1f}", "y": f"{h - bottom + 14}", "label": f"{e:.3g}"}
             for e in (edges[0], edges[len(edges) // 2], edges[-1])]
    ticks.append({"x": f"{left - 4}", "y": f"{top + 8}", "label": f"{y_max:.2f}",
                  "anchor": "end"})
    return {"width": w, "height": h, "series": series, "axes": axes, "ticks": ticks}


def plot_invariance(curves: Mapping[str, Any], path: Path) -> Path | None:
    """One panel per transformation: the response against the scale, angle or shift."""
    panels = {name: pts for name, pts in curves.items() if isinstance(pts, list) and pts
              and all(isinstance(p, list) and len(p) == 2 and all(map(is_number, p))
                      for p in pts)}
    if not panels:
        return None
    return save_invariance(path, panels)
