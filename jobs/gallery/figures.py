"""Every figure the gallery shows, read once from ``evaluation.json``, so each page shows the same.

Two kinds of figure, each named by its protocol wherever it appears:

- a **unit's own figure** (:func:`unit_figure`): the unit fixed, its polarity and threshold
  chosen on one half of the probe and scored on the other; mean held-out balanced accuracy ±
  its spread (standard deviation over the splits) and the held-out AUC. One per unit, from the
  ranking of ``catneuron evaluate``; shown on the overview, the stage page and the unit page.
- a **set's figure** (:func:`set_figures`, ``best_neuron``, the baselines): the unit chosen on
  the choosing half too, so the search over many units is part of what is measured. This is
  what the verdict compares with the baselines; the best of a ranking of unit figures is
  optimistic by comparison (the ranking sees every split).

The headline (:func:`headline`) is the ``verdict`` object of ``evaluation.json`` shown as is;
an evaluation from an older version (no ``verdict``) gets the gallery's own reading
(:func:`verdict`), said to be such.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.gallery.inputs import RunInputs, is_index, is_number
from models.neurons.draws import needed_lead

#: Baselines of ``evaluation.json`` in the order shown, with what each one is.
BASELINES = {
    "always_negative": "always negative",
    "best_pixel": "best single pixel",
    "image_statistics": "image statistics (mean, spread, gradient energy, Laplacian variance)",
    "random_weights": "same network, random weights (best of 3 draws)",
    "exemplar_filters": "same network, training patches as weights",
    "spread_exemplar_filters": "same network, spread-out (k-means++) training windows as weights",
    "linear_filters": "best linear filter from training patches",
    "stage0": "best unit of stage 0",
}
#: References of ``evaluation.json`` (a ceiling to read the figures against, not a baseline).
REFERENCES = {"mean_face_template": "mean training face as a template (best position and size)"}
#: A layer name as it may appear in a file name (``pooled``, ``hidden``, ``pooled_lcn``).
LAYER_NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")


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


def is_layer(x: Any) -> bool:
    """A layer name safe in a file name and a URL (:data:`LAYER_NAME`)."""
    return isinstance(x, str) and LAYER_NAME.fullmatch(x) is not None


def unit_of(d: Any, layer: str = "pooled") -> dict | None:
    """``{"stage", "layer", "index", "key", "name", "href"}`` of a unit dict (``layer`` when it
    names none), or None when its stage, layer or index is not valid. ``key`` is
    ``"stage/layer/index"`` (the histograms' key), ``href`` its page from the overview:
    ``stage{k}/unit{i}.html`` for a pooled unit, ``stage{k}/{layer}{i}.html`` for the others."""
    if not isinstance(d, Mapping):
        return None
    stage, index, layer = d.get("stage"), d.get("index"), d.get("layer", layer)
    if not (is_index(stage) and is_index(index) and is_layer(layer)):
        return None
    page = f"unit{index}" if layer == "pooled" else f"{layer}{index}"
    return {"stage": stage, "layer": layer, "index": index, "key": f"{stage}/{layer}/{index}",
            "name": f"stage {stage} {layer} #{index}", "href": f"stage{stage}/{page}.html"}


def unit_figure(r: Any) -> dict:
    """A unit's own figure from its ranking entry: held-out balanced accuracy ``ba`` ± ``std``
    (over the splits) and held-out ``auc``, the unit fixed and only its polarity and threshold
    chosen on the choosing half. Missing figures are None (never the whole-probe AUC)."""
    r = r if isinstance(r, Mapping) else {}
    return {k: r[src] if is_number(r.get(src)) else None for k, src in (
        ("ba", "heldout_balanced_accuracy"), ("std", "heldout_balanced_accuracy_std"),
        ("auc", "heldout_auc"))}


def unit_figures(evaluation: Any) -> dict[str, dict]:
    """``"stage/layer/index"`` -> the unit's own figure (:func:`unit_figure`) plus its ``rank``
    in its (stage, layer), for every unit of ``evaluation.json``'s rankings."""
    out: dict[str, dict] = {}
    entries = evaluation.get("stages") if isinstance(evaluation, Mapping) else None
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, Mapping) or not is_index(e.get("stage")) or not is_layer(
                e.get("layer")):
            continue
        rows = e.get("ranking") if isinstance(e.get("ranking"), list) else []
        for rank, r in enumerate(rows, 1):
            if isinstance(r, Mapping) and is_index(r.get("index")):
                out.setdefault(f"{e['stage']}/{e['layer']}/{r['index']}",
                               {**unit_figure(r), "rank": rank})
    return out


def set_figures(evaluation: Any) -> dict[str, dict]:
    """``"stage/layer"`` -> the figure of that set of units (the unit chosen on the choosing
    half too: ``stages[].best``): ``{"n_units", "unit" (:func:`unit_of`), "score",
    "normalised"}``."""
    out = {}
    entries = evaluation.get("stages") if isinstance(evaluation, Mapping) else None
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, Mapping) or not is_index(e.get("stage")) or not is_layer(
                e.get("layer")):
            continue
        best = e.get("best") if isinstance(e.get("best"), Mapping) else {}
        out[f"{e['stage']}/{e['layer']}"] = {
            "stage": e["stage"], "layer": e["layer"], "n_units": e.get("n_units"),
            "unit": unit_of({**best, "stage": e["stage"], "layer": e["layer"]}),
            "score": score(best), "normalised": e.get("normalised") is True}
    return out


def baseline_rows(baselines: Any, known: Mapping[str, str] = BASELINES) -> list[dict]:
    """One row per baseline: known ones first, in ``known`` order, then any others (entries
    that are not SCORE dicts, such as a reference not computed, are left out)."""
    if not isinstance(baselines, Mapping):
        return []
    names = [k for k in known if k in baselines] + sorted(
        str(k) for k in baselines if k not in known)
    return [{"key": k, "name": known.get(k, k) + drawn_label(baselines[k]),
             "score": score(baselines[k])}
            for k in names if isinstance(baselines.get(k), Mapping)]


def drawn_label(entry: Mapping) -> str:
    """' (mean of N draws, X to Y, spread S)' for a baseline drawn several times (S: the
    draws' standard deviation, the lead a unit needs beside its own spread), else ''."""
    d = entry.get("draws")
    ba = d.get("heldout_balanced_accuracy") if isinstance(d, Mapping) else None
    if not (isinstance(ba, list) and ba and all(is_number(v) for v in ba)):
        return ""
    spread = f", spread {d['std']:.3f}" if is_number(d.get("std")) else ""
    return f" (mean of {len(ba)} draws, {min(ba):.3f} to {max(ba):.3f}{spread})"


def headline(evaluation: Any) -> dict | None:
    """The overview's first panel and the demo's headline line: the verdict of
    ``evaluation.json`` shown as is (``text``, ``face_unit``, the headline ``unit`` from its
    ``best``), or, for an evaluation from an older version (no ``verdict``), the gallery's own
    reading (:func:`verdict`) with ``older`` set. None when there is no evaluation."""
    if not isinstance(evaluation, Mapping):
        return None
    best = evaluation.get("best_neuron")
    v = evaluation.get("verdict")
    if isinstance(v, Mapping) and isinstance(v.get("text"), str):
        unit = unit_of(v.get("best")) or unit_of(best)
        return {"older": False, "state": "found" if v.get("face_unit") is True else "not_found",
                "text": v["text"][:2000], "unit": unit, "old": None}
    old = verdict(best, evaluation.get("baselines"))
    return {"older": True, "state": old["state"], "text": None, "unit": unit_of(best),
            "old": old}


def corpus_share(evaluation: Any, unit: dict | None) -> dict | None:
    """``best_neuron.corpus_top100_face_share`` (and the base rate) when ``best_neuron`` is
    ``unit``: the share of face frames among its top 100 training frames, and how many
    distinct appearances (face ones, and the corpus's face appearances) those frames are."""
    best = evaluation.get("best_neuron") if isinstance(evaluation, Mapping) else None
    ref = unit_of(best)
    if unit is None or ref is None or ref["key"] != unit["key"] or not is_number(
            best.get("corpus_top100_face_share")):
        return None
    return {"share": best["corpus_top100_face_share"],
            "base_rate": _number(best, "corpus_face_base_rate"),
            "appearances": _number(best, "corpus_top100_appearances"),
            "face_appearances": _number(best, "corpus_top100_face_appearances"),
            "corpus_face_appearances": _number(best, "corpus_face_appearances")}


def _number(d: Mapping, key: str) -> float | None:
    """``d[key]`` when it is a number, else None (absent from an older file, or malformed)."""
    return d.get(key) if is_number(d.get(key)) else None


def verdict(best: Any, baselines: Any) -> dict:
    """Whether the best unit beats every baseline on held-out balanced accuracy by more than
    its spread over splits (and a drawn baseline by more than its draws' spread,
    :func:`models.neurons.draws.needed_lead`): ``found`` / ``not_found`` / ``unknown``, with
    the figures."""
    unit, rows = score(best), baseline_rows(baselines)
    ba, std = unit["heldout_balanced_accuracy"], unit["heldout_balanced_accuracy_std"] or 0.0
    scored = [r for r in rows if r["score"]["heldout_balanced_accuracy"] is not None]
    top = max(scored, key=lambda r: r["score"]["heldout_balanced_accuracy"], default=None)
    if ba is None or top is None:
        state = "unknown"
    else:
        state = "found" if all(ba - r["score"]["heldout_balanced_accuracy"] > needed_lead(
            max(std, 0.0), baselines[r["key"]]) for r in scored) else "not_found"
    return {"state": state, "unit": unit, "rows": rows, "top_baseline": top,
            "name": unit_name(best) if isinstance(best, Mapping) else "no unit"}


def eval_stage(evaluation: Any, stage: int, layer: str) -> dict:
    """``evaluation.json``'s entry for (stage, layer), or {} if it has none."""
    entries = evaluation.get("stages") if isinstance(evaluation, Mapping) else None
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, Mapping) and e.get("stage") == stage and e.get("layer") == layer:
            return dict(e)
    return {}


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


@dataclass
class Figures:
    """The figures of one run: ``units`` (key -> own figure and rank), ``sets``
    (``"stage/layer"`` -> set figure), the ``headline``, the headline unit's corpus share
    (``share``) and the ``protocol`` (``n_splits``, ``n_thresholds``)."""

    units: dict[str, dict] = field(default_factory=dict)
    sets: dict[str, dict] = field(default_factory=dict)
    headline: dict | None = None
    share: dict | None = None
    protocol: dict = field(default_factory=dict)

    @classmethod
    def of(cls, inputs: RunInputs) -> Figures:
        ev = inputs.evaluation
        head = headline(ev)
        protocol = ev.get("protocol") if isinstance(ev, Mapping) else None
        return cls(unit_figures(ev), set_figures(ev), head,
                   corpus_share(ev, head["unit"] if head else None),
                   dict(protocol) if isinstance(protocol, Mapping) else {})

    def unit(self, ref: Mapping, entry: Mapping) -> dict:
        """The unit's own figure: from the evaluation's ranking, else from its stage file's
        ``selectivity`` (held-out keys only), else missing (None)."""
        fig = self.units.get(ref["key"])
        if fig is None:
            sel = entry.get("selectivity") if isinstance(entry, Mapping) else None
            fig = {**unit_figure(sel), "rank": None}
        return {**fig, "key": ref["key"]}

    def best_of(self, ref: Mapping) -> list[dict]:
        """The sets (stage, layer) whose best unit (chosen held out) is this unit."""
        return [s for s in self.sets.values() if s["unit"] and s["unit"]["key"] == ref["key"]]

    def is_headline(self, ref: Mapping | None) -> bool:
        unit = self.headline["unit"] if self.headline else None
        return bool(ref and unit and unit["key"] == ref["key"])

    def corpus(self, ref: Mapping | None) -> dict | None:
        """The corpus share of the headline unit's top frames, for that unit only."""
        return self.share if self.is_headline(ref) else None
