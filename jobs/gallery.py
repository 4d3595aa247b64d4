"""The feature gallery: static HTML pages of what every unit of a run learned.

``build_gallery(RUN)`` reads the run's files (``config.toml``, ``metrics.jsonl``, the dataset's
``_manifest.json``, ``evaluation.json``, ``visualize/``; see ``jobs/RUN_FILES.md``) and writes
``RUN/gallery/``:

- ``index.html``: first the answer to "is there a face unit?" (the best unit's held-out
  balanced accuracy and AUC beside every baseline, or the honest absence of one with the same
  figures), then the best unit of every probe class, the training curves, the stages, the
  dataset (videos, frames, failed sources with their reasons) and the run's config;
- ``stage{k}.html``: the weight mosaic and the units ranked by selectivity;
- ``stage{k}/unit{index}.html``: weights, top frames with the exciting patch marked, optimal
  stimulus, response histogram per probe class, invariance curves.

Pages are rendered by jinja2 with autoescape from ``jobs/templates/``; images are referenced by
relative URLs (the folder opens from ``file://`` or any static server) and the pages load
nothing from the network and run no script. The gallery is built in ``RUN/.gallery.tmp`` and
swapped in whole, so a re-run replaces it from the run's files without retraining. Also
``python -m jobs.gallery RUN``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.gallery_inputs import RunInputs, is_index, is_number, load_run
from jobs.gallery_plots import histogram_svg, plot_invariance
from jobs.gallery_views import (
    BASELINES,
    baseline_rows,
    curves,
    dataset,
    eval_stage,
    image,
    per_class,
    ranking,
    score,
    url,
    verdict,
)

TEMPLATES = Path(__file__).parent / "templates"
N_HERO_FRAMES = 4


def fig(x: Any, digits: int = 3) -> str:
    """A figure for the page: fixed decimals, or a dash when it is missing."""
    return f"{x:.{digits}f}" if is_number(x) else "—"


def environment():
    """The jinja2 environment: templates from ``jobs/templates``, every value autoescaped."""
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fig"] = fig
    return env


def _frame(page_dir: Path, inputs: RunInputs, f: Any, k: int) -> dict:
    """One top frame: the image, the exciting patch as percentages of the frame, its source.

    The box is in frame pixels; the PNG may be scaled, so the frame's size comes from the
    entry's ``frame_shape`` (H, W) if given, else the run's input size, else the PNG's size.
    """
    f = f if isinstance(f, Mapping) else {}
    view = {"image": image(page_dir, inputs.run_dir / "visualize", f.get("png"), inputs.run_dir,
                           f"top frame {k}"),
            "source": str(f.get("source", "unknown source")),
            "frame_index": f.get("frame_index"), "activation": f.get("activation"), "box": None}
    size = inputs.frame_size() or view["image"].get("size")
    shape = f.get("frame_shape")
    if isinstance(shape, list) and len(shape) == 2 and all(map(is_number, shape)):
        size = (shape[1], shape[0])  # frame (H, W) -> (width, height)
    box = f.get("box")
    if size and isinstance(box, list) and len(box) == 4 and all(map(is_number, box)):
        (y0, x0, y1, x1), (w, h) = box, size

        def pct(v, n):
            return min(100.0, max(0.0, 100.0 * v / n)) if n else 0.0
        view["box"] = (f"left:{pct(x0, w):.2f}%;top:{pct(y0, h):.2f}%;"
                       f"width:{pct(x1 - x0, w):.2f}%;height:{pct(y1 - y0, h):.2f}%")
    return view


def _histogram(evaluation: Any, stage: int, layer: str, index: int) -> dict:
    """The unit's response histogram per probe class (an SVG view) from ``evaluation.json``."""
    hist = evaluation.get("histograms") if isinstance(evaluation, Mapping) else None
    if not isinstance(hist, Mapping):
        return {"missing": "response histogram: evaluation.json has no histograms"}
    bins = hist.get("bins")
    if isinstance(bins, Mapping):
        bins = bins.get(f"{stage}/{layer}")
    units = hist.get("units")
    counts = units.get(f"{stage}/{layer}/{index}") if isinstance(units, Mapping) else None
    svg = None
    if isinstance(bins, list) and isinstance(counts, Mapping):
        svg = histogram_svg(bins, counts)
    if svg is None:
        return {"missing": f"response histogram: none for unit {stage}/{layer}/{index}"}
    return {"svg": svg}


def _invariance(u: Mapping, page_dir: Path, vis: Path, root: Path, index: int) -> dict:
    """The invariance curves: the PNG visualize drew, else drawn here from its numbers."""
    inv = u.get("invariance")
    if not isinstance(inv, Mapping):
        return {"missing": "invariance curves: not computed for this unit"}
    view = image(page_dir, vis, inv.get("png"), root, "invariance curves")
    if "src" in view or not isinstance(inv.get("curves"), Mapping):
        return view
    path = plot_invariance(inv["curves"], page_dir / f"unit{index}_invariance.png")
    return view if path is None else {"src": url(page_dir, path), "alt": "invariance curves",
                                      "size": None}


def unit_view(inputs: RunInputs, stage: int, layer: str, u: Mapping, rank: dict | None,
              out: Path) -> dict:
    """Everything ``stage{k}/unit{index}.html`` shows, plus the stage page's row."""
    root, vis, page_dir = inputs.run_dir, inputs.run_dir / "visualize", out / f"stage{stage}"
    page_dir.mkdir(parents=True, exist_ok=True)
    index = u["index"]
    sel = u.get("selectivity")
    opt = u.get("optimal_stimulus") if isinstance(u.get("optimal_stimulus"), Mapping) else {}
    frames = u.get("top_frames") if isinstance(u.get("top_frames"), list) else []
    return {
        "index": index, "stage": stage, "layer": layer,
        "where": {k: u.get(k) for k in ("map", "y", "x") if is_index(u.get(k))},
        "sel": score(sel) if isinstance(sel, Mapping) else (rank or score(None)),
        "rank": (rank or {}).get("rank"), "href": f"stage{stage}/unit{index}.html",
        "thumb": image(out, vis, u.get("weights_png"), root, "weights"),
        "weights": image(page_dir, vis, u.get("weights_png"), root, "weights"),
        "top_frames": [_frame(page_dir, inputs, f, k) for k, f in enumerate(frames)],
        "optimal": {"image": image(page_dir, vis, opt.get("png"), root, "optimal stimulus"),
                    "activation": opt.get("activation"), "n_starts": opt.get("n_starts")},
        "histogram": _histogram(inputs.evaluation, stage, layer, index),
        "invariance": _invariance(u, page_dir, vis, root, index),
    }


def _listed_units(inputs: RunInputs, stage: int) -> list[dict]:
    """The stage's unit entries with a valid, unique index (others noted as refused)."""
    units = inputs.stages[stage].get("units")
    seen, out = set(), []
    for u in units if isinstance(units, list) else []:
        index = u.get("index") if isinstance(u, Mapping) else None
        if not is_index(index) or index in seen:
            inputs.note(f"stage {stage}: unit entry refused (index {index!r:.40})")
            continue
        seen.add(index)
        out.append(u)
    return out


def stage_view(inputs: RunInputs, stage: int, out: Path) -> dict:
    """Everything ``stage{k}.html`` shows, with its unit views ranked by selectivity."""
    data = inputs.stages[stage]
    layer = str(data.get("layer", "pooled"))
    entry = eval_stage(inputs.evaluation, stage, layer)
    ranks = ranking(entry)
    units = [unit_view(inputs, stage, layer, u, ranks.get(u["index"]), out)
             for u in _listed_units(inputs, stage)]
    units.sort(key=lambda v: (v["sel"]["heldout_balanced_accuracy"] is None,
                              -(v["sel"]["heldout_balanced_accuracy"] or 0.0), v["index"]))
    shape = data.get("shape")
    best = entry.get("best") if isinstance(entry.get("best"), Mapping) else {}
    return {
        "stage": stage, "layer": layer, "href": f"stage{stage}.html",
        "shape": " x ".join(str(s) for s in shape) if isinstance(shape, list) else "?",
        "mosaic": image(out, inputs.run_dir / "visualize", data.get("mosaic_png"),
                        inputs.run_dir, "weight mosaic"),
        "units": units,
        "eval": {"n_units": entry.get("n_units"), "best": score(best),
                 "best_index": best.get("index"),
                 "readout": entry.get("linear_readout_balanced_accuracy")},
    }


def unit_href(stages: list[dict], unit: Any) -> str | None:
    """The overview's link to a unit's page, if the gallery has one for it."""
    if not isinstance(unit, Mapping):
        return None
    for st in stages:
        if st["stage"] == unit.get("stage") and st["layer"] == unit.get("layer"):
            for u in st["units"]:
                if u["index"] == unit.get("index"):
                    return u["href"]
    return None


def _hero(inputs: RunInputs, best: Any, out: Path) -> dict | None:
    """The best unit's optimal stimulus and first top frames, for the top of the overview."""
    if not isinstance(best, Mapping) or best.get("stage") not in inputs.stages:
        return None
    data = inputs.stages[best["stage"]]
    if data.get("layer", "pooled") != best.get("layer", "pooled"):
        return None
    units = data.get("units") if isinstance(data.get("units"), list) else []
    u = next((u for u in units if isinstance(u, Mapping) and is_index(u.get("index"))
              and u["index"] == best.get("index")), None)
    if u is None:
        return None
    vis, root = inputs.run_dir / "visualize", inputs.run_dir
    opt = u.get("optimal_stimulus") if isinstance(u.get("optimal_stimulus"), Mapping) else {}
    frames = u.get("top_frames") if isinstance(u.get("top_frames"), list) else []
    return {"optimal": image(out, vis, opt.get("png"), root, "optimal stimulus"),
            "frames": [_frame(out, inputs, f, k) for k, f in enumerate(frames[:N_HERO_FRAMES])]}


def overview(inputs: RunInputs, out: Path, stages: list[dict]) -> dict:
    """Everything ``index.html`` shows."""
    ev = inputs.evaluation or {}
    best = ev.get("best_neuron")
    classes = per_class(ev)
    for row in classes:
        row["href"] = unit_href(stages, row["unit"])
        row["baselines"] = {x["key"]: x["score"] for x in row["verdict"]["rows"]}
    present = {k for row in classes for k in row["baselines"]}
    keys = [k for k in BASELINES if k in present] + sorted(present - set(BASELINES))
    readout = ev.get("linear_readout")
    probe = ev.get("probe") if isinstance(ev.get("probe"), Mapping) else {}
    return {
        "run": inputs.run_dir.resolve().name, "run_dir": str(inputs.run_dir),
        "command": inputs.command, "config_text": inputs.config_text,
        "verdict": verdict(best, ev.get("baselines")) if inputs.evaluation else None,
        "best_href": unit_href(stages, best), "hero": _hero(inputs, best, out),
        "probe": {"source": str(probe.get("source", "?")),
                  "positive": str(probe.get("positive", "?")),
                  "classes": {str(k): v for k, v in probe.get("classes", {}).items()}
                  if isinstance(probe.get("classes"), Mapping) else {}},
        "protocol": ev.get("protocol") if isinstance(ev.get("protocol"), Mapping) else {},
        "per_class": classes, "class_baselines": [(k, BASELINES.get(k, k)) for k in keys],
        "readout": {str(k): v for k, v in readout.items()} if isinstance(readout, Mapping)
        else {},
        "curves": curves(inputs, out), "stages": stages, "dataset": dataset(inputs),
        "missing": inputs.missing,
    }


def _render(env, template: str, path: Path, **context: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template(template).render(**context), encoding="utf-8")


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the freshly built ``tmp`` folder."""
    old = final.with_name(".gallery.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build_gallery(run_dir: Path) -> Path:
    """Write ``run_dir/gallery/`` from the run's files and return its ``index.html``.

    Missing or refused inputs are listed on the pages; nothing is read outside ``run_dir``
    except the dataset's ``_manifest.json``.
    """
    run_dir = Path(run_dir)
    inputs = load_run(run_dir)
    tmp = run_dir / ".gallery.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(TEMPLATES / "gallery.css", tmp / "gallery.css")
    env = environment()
    stages = [stage_view(inputs, k, tmp) for k in sorted(inputs.stages)]
    for st in stages:
        _render(env, "stage.html", tmp / st["href"], stage=st, run=inputs.run_dir.name,
                css="gallery.css", home="index.html")
        for u in st["units"]:
            _render(env, "unit.html", tmp / u["href"], stage=st, unit=u,
                    run=inputs.run_dir.name, css="../gallery.css", home="../index.html")
    _render(env, "index.html", tmp / "index.html", ov=overview(inputs, tmp, stages),
            baseline_rows=baseline_rows, run=inputs.run_dir.name, css="gallery.css",
            home="index.html")
    final = run_dir / "gallery"
    _swap_in(tmp, final)
    return final / "index.html"


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.gallery RUN``: (re)build a run's gallery; prints its ``file://`` URL."""
    p = argparse.ArgumentParser(prog="python -m jobs.gallery",
                                description="Build RUN/gallery/ from a run's files.")
    p.add_argument("run", type=Path, help="run folder (RUN/config.toml, RUN/visualize/, ...)")
    args = p.parse_args(argv)
    if not args.run.is_dir():
        print(f"gallery: {args.run} is not a folder; give a run folder written by "
              "'catneuron train'", file=sys.stderr)
        return 2
    index = build_gallery(args.run)
    print(f"gallery: {index}\n  {index.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
