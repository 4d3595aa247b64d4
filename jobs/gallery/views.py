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

from jobs.gallery.inputs import RunInputs, image_size, is_number, safe_file
from jobs.gallery.plots import CURVE_KEYS, plot_curve


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


def _listed(value: object) -> list:
    """A manifest's list as it is; anything else (a damaged file) as no entries."""
    return value if isinstance(value, list) else []


def dataset(inputs: RunInputs) -> dict | None:
    """Videos, frames and failed sources with their reasons, from the dataset manifest."""
    m = inputs.manifest
    if m is None:
        return None
    videos = [v for v in _listed(m.get("videos")) if isinstance(v, Mapping)]
    shards = [s for s in _listed(m.get("shards")) if isinstance(s, Mapping)]
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


