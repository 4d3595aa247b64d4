"""Plain dicts for the gallery's templates, built from a run's inputs.

A view holds only strings, numbers, lists and dicts; every URL in it is relative to the page that
shows it and percent-encoded (:func:`url`), every image is either ``{"src", "alt", "size"}`` for
a file that exists inside the run folder or ``{"missing": reason}``. The templates escape all text
(jinja2 autoescape), so names from outside (video sources, class folders, file names) appear as
text, never as markup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobs.gallery_inputs import RunInputs, image_size, is_index, is_number, safe_file
from jobs.gallery_plots import CURVE_KEYS, plot_curve

#: Baselines of ``evaluation.json`` in the order shown, with what each one is.
BASELINES = {
    "always_negative": "always negative",
    "best_pixel": "best single pixel",
    "random_weights": "same network, random weights",
    "linear_filters": "best linear filter from training patches",
    "stage0": "best unit of stage 0",
}


def url(page_dir: Path, target: Path) -> str:
    """``target`` relative to ``page_dir``, '/'-separated and percent-encoded."""
    return quote(os.path.relpath(target, page_dir).replace(os.sep, "/"))


def image(page_dir: Path, folder: Path, rel: Any, root: Path, what: str) -> dict:
    """An ``<img>`` view of ``folder/rel`` if it is a safe, existing image; else a missing
    note naming what was expected."""
    path = safe_file(folder, rel, root)
    if path is None:
        why = "not given" if rel is None else f"{str(rel)[:120]} refused or not found"
        return {"missing": f"{what}: {why}"}
    return {"src": url(page_dir, path), "alt": what, "size": image_size(path)}


def score(d: Any) -> dict:
    """The figures of one SCORE dict (missing or non-numeric ones are None)."""
    keys = ("heldout_balanced_accuracy", "heldout_balanced_accuracy_std", "heldout_auc",
            "heldout_accuracy", "balanced_accuracy", "auc", "accuracy")
    d = d if isinstance(d, Mapping) else {}
    out = {k: d[k] if is_number(d.get(k)) else None for k in keys}
    out["polarity"] = d.get("polarity") if is_number(d.get("polarity")) else None
    # rankings and stage files carry one "auc" beside the held-out balanced accuracy
    out["any_auc"] = out["heldout_auc"] if out["heldout_auc"] is not None else out["auc"]
    return out


def unit_name(d: Mapping) -> str:
    """'stage 1 pooled #123' for a unit dict with stage, layer, index."""
    return f"stage {d.get('stage', '?')} {d.get('layer', '')} #{d.get('index', '?')}".replace(
        "  ", " ")


def baseline_rows(baselines: Any) -> list[dict]:
    """One row per baseline: known ones first, in :data:`BASELINES` order, then any others."""
    if not isinstance(baselines, Mapping):
        return []
    names = [k for k in BASELINES if k in baselines] + sorted(
        str(k) for k in baselines if k not in BASELINES)
    return [{"key": k, "name": BASELINES.get(k, k), "score": score(baselines.get(k))}
            for k in names]


def verdict(best: Any, baselines: Any) -> dict:
    """Whether the best unit beats every baseline on held-out balanced accuracy by more than
    its spread over splits: ``found`` / ``not_found`` / ``unknown``, with the figures."""
    unit, rows = score(best), baseline_rows(baselines)
    ba, std = unit["heldout_balanced_accuracy"], unit["heldout_balanced_accuracy_std"] or 0.0
    scored = [r for r in rows if r["score"]["heldout_balanced_accuracy"] is not None]
    top = max(scored, key=lambda r: r["score"]["heldout_balanced_accuracy"], default=None)
    if ba is None or top is None:
        state = "unknown"
    else:
        margin = ba - top["score"]["heldout_balanced_accuracy"]
        state = "found" if margin > max(std, 0.0) else "not_found"
    return {"state": state, "unit": unit, "rows": rows, "top_baseline": top,
            "name": unit_name(best) if isinstance(best, Mapping) else "no unit"}


def dataset(inputs: RunInputs) -> dict | None:
    """Videos, frames and failed sources with their reasons, from the dataset manifest."""
    m = inputs.manifest
    if m is None:
        return None
    videos = [v for v in m.get("videos", []) if isinstance(v, Mapping)]
    shards = [s for s in m.get("shards", []) if isinstance(s, Mapping)]
    ok = [v for v in videos if v.get("status") == "ok"]
    failed = [v for v in videos if v.get("status") != "ok"]
    return {
        "path": str(inputs.data_dir),
        "n_videos": len(videos), "n_ok": len(ok), "n_failed": len(failed),
        "n_frames": int(sum(s["rows"] for s in shards if is_number(s.get("rows")))),
        "n_shards": len(shards),
        "ok": [{"source": str(v.get("source")), "frames": v.get("frames")} for v in ok],
        "failed": [{"source": str(v.get("source")), "status": str(v.get("status")),
                    "reason": str(v.get("error") or "no reason recorded")} for v in failed],
        "options": m.get("options") if isinstance(m.get("options"), Mapping) else {},
    }


def curves(inputs: RunInputs, out: Path) -> list[dict]:
    """Training curves: the PNGs ``catneuron visualize`` listed, else drawn here from
    ``metrics.jsonl``."""
    vis = inputs.run_dir / "visualize"
    listed = (inputs.vis_index or {}).get("curves")
    views = []
    for c in listed if isinstance(listed, list) else []:
        if isinstance(c, Mapping):
            title = str(c.get("title", "curve"))
            views.append({"title": title,
                          "image": image(out, vis, c.get("png"), inputs.run_dir, title)})
    if any("src" in v["image"] for v in views):
        return views
    for key, title in CURVE_KEYS:
        path = plot_curve(inputs.metrics, key, title, out / f"curve_{key}.png")
        if path is not None:
            views.append({"title": f"{title} (from metrics.jsonl)",
                          "image": {"src": url(out, path), "alt": title,
                                    "size": image_size(path)}})
    return views


def eval_stage(evaluation: Any, stage: int, layer: str) -> dict:
    """``evaluation.json``'s entry for (stage, layer), or {} if it has none."""
    entries = evaluation.get("stages") if isinstance(evaluation, Mapping) else None
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, Mapping) and e.get("stage") == stage and e.get("layer") == layer:
            return dict(e)
    return {}


def ranking(entry: Mapping) -> dict[int, dict]:
    """index -> (rank, score) from an evaluation stage entry's ``ranking`` list."""
    rows = entry.get("ranking")
    out = {}
    for rank, r in enumerate(rows if isinstance(rows, list) else []):
        if isinstance(r, Mapping) and is_index(r.get("index")):
            out.setdefault(r["index"], {"rank": rank + 1, **score(r)})
    return out


def per_class(evaluation: Any) -> list[dict]:
    """One row per probe class: its best unit (one-vs-rest) and every baseline."""
    classes = evaluation.get("per_class") if isinstance(evaluation, Mapping) else None
    rows = []
    for name, entry in (classes.items() if isinstance(classes, Mapping) else []):
        entry = entry if isinstance(entry, Mapping) else {}
        best = entry.get("best_neuron")
        rows.append({"name": str(name), "verdict": verdict(best, entry.get("baselines")),
                     "unit": dict(best) if isinstance(best, Mapping) else {}})
    return rows
