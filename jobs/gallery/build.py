"""The feature gallery: static HTML pages of what every unit of a run learned.

``build_gallery(RUN)`` reads the run's files (``config.toml``, ``metrics.jsonl``, the dataset's
``_manifest.json``, ``evaluation.json``, ``visualize/``; see ``jobs/RUN_FILES.md``) and writes
``RUN/gallery/``:

- ``index.html``: first the answer to "is there a face unit?" (``evaluation.json``'s verdict as
  written, the headline unit with a link to its page, its top frames and the share of face
  frames among its top 100, the held-out figures of the best unit beside every baseline), then
  the best unit of every probe class, the training curves, the stages, the dataset (videos,
  frames, failed sources with their reasons) and the run's config;
- ``stage{k}.html``: each layer's best unit chosen held out, the weight mosaic and, per layer,
  the units shown ranked by their own held-out figure;
- ``stage{k}/unit{index}.html`` (pooled units), ``stage{k}/{layer}{index}.html`` (others):
  the unit's own figure, weights, top frames with the exciting patch marked, optimal stimulus,
  response histogram per probe class, invariance curves.

Every figure comes from :class:`jobs.gallery.figures.Figures`, so a unit (or a set of units)
shows the same figure on every page, each named by its protocol.

Pages are rendered by jinja2 with autoescape from ``jobs/gallery/templates/``; images are
referenced by relative URLs (the folder opens from ``file://`` or any static server) and the
pages load nothing from the network and run no script. The gallery is built in
``RUN/.gallery.tmp`` and swapped in whole, so a re-run replaces it from the run's files without
retraining. Also ``python -m jobs.gallery RUN``. A rebuild replaces ``RUN/gallery/`` only when
it holds nothing but the files the gallery writes (:data:`OWN_FILES`), so a file someone put
there is never deleted; ``catneuron gallery`` takes only a run that ``catneuron visualize`` wrote
into (:func:`check_run`).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.errors import ArgumentParser, UserError, command, location
from jobs.gallery.figures import (
    BASELINES,
    REFERENCES,
    Figures,
    baseline_rows,
    eval_stage,
    per_class,
    score,
    unit_name,
    unit_of,
)
from jobs.gallery.inputs import RunInputs, is_index, is_number, load_run
from jobs.gallery.plots import histogram_svg, plot_invariance
from jobs.gallery.views import curves, dataset, image, url

TEMPLATES = Path(__file__).parent / "templates"
N_HERO_FRAMES = 4
#: What the gallery writes into ``RUN/gallery/``, now or in earlier versions ('/'-separated,
#: relative to it): the pages, the stylesheet, the curves and invariance plots it draws, the
#: ``*_hist.png`` of older versions. A rebuild replaces the folder only if it holds nothing else.
OWN_FILES = re.compile(r"gallery\.css|index\.html|stage\d+\.html|curve_\w+\.png"
                       r"|stage\d+/\w+\.html|stage\d+/\w+_(invariance|hist)\.png")
OWN_FOLDERS = re.compile(r"stage\d+")


def fig(x: Any, digits: int = 3) -> str:
    """A figure for the page: fixed decimals, or a dash when it is missing."""
    return f"{x:.{digits}f}" if is_number(x) else "—"


def environment():
    """The jinja2 environment: templates from ``jobs/gallery/templates``, every value
    autoescaped."""
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


def _invariance(u: Mapping, page_dir: Path, vis: Path, root: Path, stem: str) -> dict:
    """The invariance curves: the PNG visualize drew, else drawn here from its numbers."""
    inv = u.get("invariance")
    if not isinstance(inv, Mapping):
        return {"missing": "invariance curves: not computed for this unit"}
    view = image(page_dir, vis, inv.get("png"), root, "invariance curves")
    if "src" in view or not isinstance(inv.get("curves"), Mapping):
        return view
    path = plot_invariance(inv["curves"], page_dir / f"{stem}_invariance.png")
    return view if path is None else {"src": url(page_dir, path), "alt": "invariance curves",
                                      "size": None}


def unit_view(inputs: RunInputs, ref: dict, u: Mapping, figures: Figures, out: Path) -> dict:
    """Everything a unit's page shows, plus its row on the stage page (and its stage-file
    ``entry``, for the overview). ``ref`` is the unit's
    :func:`jobs.gallery.figures.unit_of`; its figure is the one :class:`Figures` gives it on
    every page."""
    root, vis, page_dir = inputs.run_dir, inputs.run_dir / "visualize", out / f"stage{ref['stage']}"
    page_dir.mkdir(parents=True, exist_ok=True)
    opt = u.get("optimal_stimulus") if isinstance(u.get("optimal_stimulus"), Mapping) else {}
    frames = u.get("top_frames") if isinstance(u.get("top_frames"), list) else []
    return {
        **ref, "entry": u, "where": {k: u.get(k) for k in ("map", "y", "x")
                                     if is_index(u.get(k))},
        "fig": figures.unit(ref, u), "best_of": figures.best_of(ref),
        "headline": figures.is_headline(ref), "corpus": figures.corpus(ref),
        "thumb": image(out, vis, u.get("weights_png"), root, "weights"),
        "weights": image(page_dir, vis, u.get("weights_png"), root, "weights"),
        "top_frames": [_frame(page_dir, inputs, f, k) for k, f in enumerate(frames)],
        "optimal": {"image": image(page_dir, vis, opt.get("png"), root, "optimal stimulus"),
                    "activation": opt.get("activation"), "n_starts": opt.get("n_starts")},
        "histogram": _histogram(inputs.evaluation, ref["stage"], ref["layer"], ref["index"]),
        "invariance": _invariance(u, page_dir, vis, root, ref["href"].rsplit("/", 1)[1][:-5]),
    }


def min_gap(inputs: RunInputs) -> int | None:
    """How far apart visualize kept a unit's top frames of one video
    (``visualize/index.json``'s ``top_frames_min_gap``), None when it did not say."""
    gap = (inputs.vis_index or {}).get("top_frames_min_gap")
    return gap if is_index(gap) else None


def _listed_units(inputs: RunInputs, stage: int) -> list[tuple[dict, Mapping]]:
    """The stage's unit entries with a valid layer and index, each (stage, layer, index) once
    (others noted as refused), with their :func:`jobs.gallery.figures.unit_of`."""
    data = inputs.stages[stage]
    units = data.get("units")
    layer = data.get("layer", "pooled")
    seen, out = set(), []
    for u in units if isinstance(units, list) else []:
        ref = unit_of({**u, "stage": stage}, layer) if isinstance(u, Mapping) else None
        if ref is None or ref["key"] in seen:
            index = u.get("index") if isinstance(u, Mapping) else None
            inputs.note(f"stage {stage}: unit entry refused (index {index!r:.40})")
            continue
        seen.add(ref["key"])
        out.append((ref, u))
    return out


def _by_figure(v: dict) -> tuple:
    ba = v["fig"]["ba"]
    return (ba is None, -(ba or 0.0), v["index"])


KIND_NAMES = {"local": "local RBM (untied fields)", "tied": "tied filters",
              "competitive": "competitive, pooled over position and size"}
LEARNER_NAMES = {"rbm": "RBM", "kmeans": "spherical k-means"}


def stage_kind(data: dict) -> str:
    """The stage type in words, e.g. "tied filters, learned by spherical k-means"."""
    kind, learner = str(data.get("kind", "local")), str(data.get("learner", "rbm"))
    by = LEARNER_NAMES.get(learner, learner)
    if kind == "competitive" and learner == "rbm":
        by = "a one-of-K RBM"
    return f"{KIND_NAMES.get(kind, kind)}, learned by {by}"


def stage_view(inputs: RunInputs, stage: int, out: Path, figures: Figures) -> dict:
    """Everything ``stage{k}.html`` shows: per layer its units ranked by their own figure and
    the figure of the layer as a set (best unit chosen held out)."""
    data = inputs.stages[stage]
    units = [unit_view(inputs, ref, u, figures, out) for ref, u in _listed_units(inputs, stage)]
    layers = list(dict.fromkeys(u["layer"] for u in units))
    shape = data.get("shape")
    entry = eval_stage(inputs.evaluation, stage, str(data.get("layer", "pooled")))
    return {
        "stage": stage, "layer": str(data.get("layer", "pooled")), "href": f"stage{stage}.html",
        "kind": stage_kind(data),
        "shape": " x ".join(str(s) for s in shape) if isinstance(shape, list) else "?",
        "mosaic": image(out, inputs.run_dir / "visualize", data.get("mosaic_png"),
                        inputs.run_dir, "weight mosaic"),
        "units": units,
        "layers": [{"layer": la, "units": sorted((u for u in units if u["layer"] == la),
                                                 key=_by_figure)} for la in layers],
        "sets": [{**v, "href": v["unit"]["href"] if v["unit"] and any(
                      u["key"] == v["unit"]["key"] for u in units) else None}
                 for v in figures.sets.values() if v["stage"] == stage],
        "readout": entry.get("linear_readout_balanced_accuracy"),
    }


def _hero(unit: dict | None, stages: list[dict], out: Path, inputs: RunInputs) -> dict | None:
    """The headline unit's optimal stimulus and first top frames, for the overview."""
    u = _find(stages, unit)
    if u is None:
        return None
    data = u["entry"]
    vis, root = inputs.run_dir / "visualize", inputs.run_dir
    opt = data.get("optimal_stimulus") if isinstance(data.get("optimal_stimulus"),
                                                     Mapping) else {}
    frames = data.get("top_frames") if isinstance(data.get("top_frames"), list) else []
    return {"optimal": image(out, vis, opt.get("png"), root, "optimal stimulus"),
            "frames": [_frame(out, inputs, f, k) for k, f in enumerate(frames[:N_HERO_FRAMES])]}


def _find(stages: list[dict], unit: Any) -> dict | None:
    """The unit view of ``unit`` (a :func:`jobs.gallery.figures.unit_of`) if it has a
    page."""
    if not isinstance(unit, Mapping):
        return None
    return next((u for st in stages for u in st["units"] if u["key"] == unit.get("key")), None)


def overview(inputs: RunInputs, out: Path, stages: list[dict], figures: Figures) -> dict:
    """Everything ``index.html`` shows."""
    ev = inputs.evaluation or {}
    head = figures.headline
    unit = head["unit"] if head else None
    classes = per_class(ev)
    for row in classes:
        ref = unit_of(row["unit"])
        row["href"] = ref["href"] if _find(stages, ref) else None
        row["baselines"] = {x["key"]: x["score"] for x in row["verdict"]["rows"]}
    present = {k for row in classes for k in row["baselines"]}
    keys = [k for k in BASELINES if k in present] + sorted(present - set(BASELINES))
    readout = ev.get("linear_readout")
    probe = ev.get("probe") if isinstance(ev.get("probe"), Mapping) else {}
    best = ev.get("best_neuron")
    return {
        "run": inputs.run_dir.resolve().name, "run_dir": str(inputs.run_dir),
        "command": inputs.command, "config_text": inputs.config_text,
        "head": head, "unit": unit, "unit_page": _find(stages, unit),
        "fig": figures.unit(unit, {}) if unit else None, "corpus": figures.corpus(unit),
        "hero": _hero(unit, stages, out, inputs),
        "set_row": {"name": f"stage {best.get('stage', '?')} units, best: {unit_name(best)}",
                    "score": score(best)} if isinstance(best, Mapping) else None,
        "baselines": baseline_rows(ev.get("baselines")),
        "references": baseline_rows(ev.get("reference"), REFERENCES),
        "probe": {"source": str(probe.get("source", "?")),
                  "positive": str(probe.get("positive", "?")),
                  "confound": probe.get("confound_balanced_accuracy"),
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


def foreign_file(gallery: Path, own_files: re.Pattern = OWN_FILES,
                 own_folders: re.Pattern = OWN_FOLDERS) -> Path | None:
    """The first entry of ``gallery`` that the gallery did not write (a name outside
    ``own_files`` and ``own_folders``, or a link), or ``gallery`` itself when it is not a
    folder; None when a rebuild may replace it whole without losing anyone's file. (Another
    folder replaced whole, ``RUN/visualize/``, is checked with its own patterns.)"""
    if gallery.is_symlink() or (gallery.exists() and not gallery.is_dir()):
        return gallery
    for top, dirs, files in os.walk(gallery):  # does not follow links
        for name in sorted(dirs + files):
            path = Path(top, name)
            own = own_folders if name in dirs else own_files
            if path.is_symlink() or not own.fullmatch(path.relative_to(gallery).as_posix()):
                return path
    return None


def check_replaceable(gallery: Path) -> None:
    """Refuse, in one line naming the file, to replace a ``gallery`` holding anything the
    gallery did not write: the swap deletes the old folder whole."""
    path = foreign_file(gallery)
    if path == gallery:
        raise UserError(f"{gallery} is not a folder the gallery wrote; move it away and run "
                        "again")
    if path is not None:
        raise UserError(f"{path} was not written by the gallery, which replaces {gallery} "
                        "whole; move it out and run again")


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the freshly built ``tmp`` folder; when ``final`` holds a file the
    gallery did not write (:func:`check_replaceable`), refuse: ``tmp`` is removed and
    ``final`` left as it is."""
    try:
        check_replaceable(final)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(".gallery.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build_gallery(run_dir: Path) -> Path:
    """Write ``run_dir/gallery/`` from the run's files and return its ``index.html``.

    Missing or refused inputs are listed on the pages; nothing is read outside ``run_dir``
    except the dataset's ``_manifest.json``. Refused (:class:`jobs.errors.UserError`) before
    anything is written when ``run_dir/gallery`` holds a file the gallery did not write.
    """
    run_dir = Path(run_dir)
    final = run_dir / "gallery"
    check_replaceable(final)  # before the build, so a refusal costs nothing
    inputs = load_run(run_dir)
    tmp = run_dir / ".gallery.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(TEMPLATES / "gallery.css", tmp / "gallery.css")
    env = environment()
    figures = Figures.of(inputs)
    stages = [stage_view(inputs, k, tmp, figures) for k in sorted(inputs.stages)]
    gap = min_gap(inputs)
    for st in stages:
        _render(env, "stage.html", tmp / st["href"], stage=st, run=inputs.run_dir.name,
                css="gallery.css", home="index.html", protocol=figures.protocol)
        for u in st["units"]:
            _render(env, "unit.html", tmp / u["href"], stage=st, unit=u,
                    run=inputs.run_dir.name, css="../gallery.css", home="../index.html",
                    protocol=figures.protocol, min_gap=gap)
    _render(env, "index.html", tmp / "index.html", ov=overview(inputs, tmp, stages, figures),
            run=inputs.run_dir.name, css="gallery.css", home="index.html",
            protocol=figures.protocol)
    _swap_in(tmp, final)  # checks again: a file may have been put there during the build
    return final / "index.html"


def check_run(location: str) -> Path:
    """``location`` as a run folder the gallery can show: a local folder that
    ``catneuron visualize`` wrote into (``visualize/index.json``, where the unit pages come
    from); else a one-line :class:`jobs.errors.UserError` naming what to run first."""
    from pipeline.storage import is_uri

    if is_uri(location):
        raise UserError(f"{location}: the gallery writes into the run folder, so it takes a "
                        "local one; copy the run down first")
    run = Path(location)
    if not run.is_dir():
        raise UserError(f"{run} is not a folder; give a run folder written by "
                        "'catneuron train'")
    if (run / "visualize" / "index.json").is_file():
        return run
    if not any((run / name).exists() for name in ("config.toml", "model.pt")):
        raise UserError(f"{run} is not a run folder (no config.toml or model.pt); give one "
                        "written by 'catneuron train'")
    raise UserError(f"{run} has no visualize/index.json; run 'catneuron visualize --run {run}' "
                    "first (it writes the gallery too)")


@command("catneuron gallery")
def main(argv: list[str] | None = None) -> int:
    """``catneuron gallery RUN`` (also ``python -m jobs.gallery RUN``): rebuild a run's
    gallery; prints its ``file://`` URL; 2 when RUN is not a visualized run folder or its
    ``gallery/`` holds a file the gallery did not write (:mod:`jobs.errors`)."""
    p = ArgumentParser(prog="catneuron gallery",
                       description="Rebuild RUN/gallery/ from a run's files.")
    p.add_argument("run", type=location, nargs="?",
                   help="run folder (RUN/config.toml, RUN/visualize/, ...)")
    p.add_argument("--run", type=location, dest="run_option", metavar="RUN",
                   help="the same, named as evaluate and visualize name it")
    args = p.parse_args(argv)
    if (args.run is None) == (args.run_option is None):
        p.error("give the run folder once: catneuron gallery RUN (or --run RUN)")
    index = build_gallery(check_run(args.run or args.run_option))
    print(f"gallery: {index}\n  {index.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
