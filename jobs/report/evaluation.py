"""What ``catneuron evaluate`` computes: every unit's selectivity and the baselines, as JSON.

Steps (the CLI in :mod:`jobs.evaluate` only parses, runs these, prints and writes):

1. :func:`unit_tables` - responses (N, units) of each stage's hidden probabilities
   (``"hidden"``), their L2 pooling (``"pooled"``) and the pooling's local contrast
   normalisation (``"pooled_lcn"``, what the next stage sees) for the probe. A unit is its own
   response: only ``hidden`` and ``pooled`` can be the headline unit, since after the
   normalisation a unit is partly a read-out of its neighbours (with a 1x1 top map, of the
   whole population);
2. :func:`baseline_tables` - the same for the baselines (raw pixels, image statistics, the
   stack with its random initial weights (the units of several draws together), exemplar
   filters in the same stack and, for a competitive top stage, the same with its units at
   spread-out (k-means++) windows, each exemplar network drawn several times, the best of
   ``n_filters`` whole-frame linear filters from training frames, stage 0) and the reference
   (the mean training face as a template at every position and size);
3. :func:`report` - :mod:`models.neurons.selectivity` scores of each set on the probe's
   reporting part (Le et al.'s protocol on the whole part, and held out: unit, polarity and
   threshold chosen on one half, groups kept on one side), the headline unit's stability and
   scores by face size and position, its top frames in the training corpus, the probe's
   confound figure (:mod:`models.neurons.image_stats`), the verdict
   (:mod:`models.neurons.verdict`), rankings, histograms, read-outs and one-vs-rest scores.

Feature extraction runs in this process: the model is read once and a probe of a few hundred
images needs one up-pass, cheaper than starting Ray actors that would each read the model.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from jobs.report.baseline_cache import BaselineCache, baseline_key
from jobs.report.corpus_tops import corpus_tops
from models.neurons import breakdown
from models.neurons.baselines import (
    filter_responses,
    patch_filters,
    reweighted_stack,
    spread_exemplar_stack,
)
from models.neurons.draws import drawn_score
from models.neurons.image_stats import (
    CONFOUND_LIMIT,
    confound_balanced_accuracy,
    image_statistics,
)
from models.neurons.selectivity import best_unit_score, fixed_split, stratified_halves
from models.neurons.template import template_responses
from models.neurons.topk import RunningTopK
from models.neurons.units import LAYERS, NORMALISED, stage_maps
from models.neurons.verdict import verdict
from models.stack import RBMStack

N_RANKED = 50
N_BINS = 20
N_TEMPLATE_SIDES = 7
TOP_FRAMES = 100
PER_CLASS_MAX_UNITS = 8192  # larger baselines are scored for the headline class only
MAX_READOUT_UNITS = 2048  # wider layers get no read-out (None): a logistic fit takes too long
RANDOM_DRAWS = 3  # random stacks whose top units together are the random-weights baseline
EXEMPLAR_DRAWS = 5  # default draws of each exemplar network (catneuron evaluate --baseline-draws)


def exemplar_draws(evaluation: dict) -> int:
    """How many draws of the exemplar network an ``evaluation.json`` scored (1 for a file
    from before they were drawn more than once, or one without that baseline)."""
    entry = (evaluation.get("baselines") or {}).get("exemplar_filters") or {}
    return int((entry.get("draws") or {}).get("n", 1))


def unit_tables(stack: RBMStack, images: np.ndarray, batch: int = 256,
                layers: tuple[str, ...] = LAYERS + NORMALISED,
                stages: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """``{"<stage>/<layer>": (N, units) float64}`` for every stage (or those of ``stages``;
    the others are run, as their input, but not kept); C-major (map, y, x) order."""
    x = torch.from_numpy(images)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), batch):
        for k, out in stage_maps(stack, x[i:i + batch]):
            if stages is not None and k not in stages:
                continue
            for layer in (la for la in layers if la in out):
                parts.setdefault(f"{k}/{layer}", []).append(out[layer].flatten(1).double().numpy())
    return {name: np.concatenate(p) for name, p in parts.items()}


def unit_response(stack: RBMStack, frames: np.ndarray, stage: int, layer: str, index: int,
                  batch: int = 256) -> np.ndarray:
    """(N,) one unit's responses to uint8 frames (N, C, H, W): the stage's maps from what it
    reads (``RBMStack.reads``), so no other stage's own output is computed."""
    x = torch.from_numpy(frames)
    st = stack.stages[stage]
    out = []
    for i in range(0, len(x), batch):
        maps = st.maps(stack.reads(x[i:i + batch], stage))
        out.append(maps[layer].flatten(1)[:, index].double().numpy())
    return np.concatenate(out)


def top_stage_tables(stacks: list[RBMStack], images: np.ndarray, batch: int = 256
                     ) -> list[np.ndarray]:
    """Each stack's top-stage units on ``images`` (:func:`top_set`'s columns: pooled, then
    hidden), from what the top stage reads (:meth:`models.stack.RBMStack.reads`: no other
    stage's own output). The stacks after the first must share its stages below the top and,
    for a competitive top stage, its whitening (the spread exemplars and their exemplar
    stack): the images are read, and whitened, once for all of them. Equal to
    ``top_set(unit_tables(stack, images, stages=(top,)), top)[0]`` for each stack."""
    first = stacks[0]
    top = first.n_layers - 1
    competitive = first.config.stages[top].kind == "competitive"
    x = torch.from_numpy(images)
    parts: list[list[np.ndarray]] = [[] for _ in stacks]
    for i in range(0, len(x), batch):
        read = first.reads(x[i:i + batch], top)
        if competitive:
            windows = first.stages[top].whitened(read)
            maps = [s.stages[top].encoded_maps(windows) for s in stacks]
        else:
            maps = [s.stages[top].maps(read) for s in stacks]
        for part, m in zip(parts, maps, strict=True):
            part.append(np.concatenate([m[la].flatten(1).double().numpy()
                                        for la in LAYERS if la in m], 1))
    return [np.concatenate(p) for p in parts]


def top_set(tables: dict[str, np.ndarray], stage: int) -> tuple[np.ndarray, list[tuple]]:
    """One stage's pooled and hidden units side by side, with (layer, index) of each column."""
    cols, names = [], []
    for layer in (la for la in LAYERS if f"{stage}/{la}" in tables):
        v = tables[f"{stage}/{layer}"]
        cols.append(v)
        names += [(layer, j) for j in range(v.shape[1])]
    return np.concatenate(cols, 1), names


def first_draws(stack: RBMStack, x: torch.Tensor, n_filters: int, generator: torch.Generator
                ) -> tuple[RBMStack, torch.Tensor, RBMStack]:
    """The first random stack, the linear filters and the exemplar stack, drawn from
    ``generator`` in this order from the training frames ``x``: what
    :func:`baseline_tables` scores, and what a diagnosis of one of its draws rebuilds
    (``benchmarks/exemplar_draws.py``)."""
    random0 = reweighted_stack(stack, x, "random", generator)
    filters = patch_filters(stack.preprocess(x), n_filters, stack.config.input_size, generator)
    return random0, filters, reweighted_stack(stack, x, "exemplar", generator)


def baseline_tables(stack: RBMStack, images: np.ndarray, frames: np.ndarray | None,
                    n_filters: int, seed: int, tables: dict[str, np.ndarray], draws: int = 1,
                    cache: BaselineCache | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Responses of each baseline's units (always-negative is scored directly), and the
    exemplar networks' further draws: raw pixels, image statistics and stage 0 (from the
    trained ``tables``), then :func:`drawn_baselines`, read from ``cache`` when it holds them
    for this configuration, probe, frames and settings (:mod:`jobs.report.baseline_cache`)."""
    out = {"best_pixel": images.reshape(len(images), -1).astype(np.float64),
           "image_statistics": image_statistics(images),
           "stage0": top_set(tables, 0)[0]}

    def compute():
        return drawn_baselines(stack, images, frames, n_filters, seed, draws)

    if cache is None:
        drawn, more = compute()
    else:
        key = baseline_key(stack.config, images, frames, seed=seed, n_filters=n_filters,
                           draws=draws)
        drawn, more = cache.get(key, len(images), compute)
    return {**out, **drawn}, more


def drawn_baselines(stack: RBMStack, images: np.ndarray, frames: np.ndarray | None,
                    n_filters: int, seed: int, draws: int = 1
                    ) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """The baselines drawn from ``seed``: the random and exemplar stacks fit their
    data-fitted parts (whitening) on the training ``frames``, and the spread exemplars (a
    competitive top stage only) are the exemplar stack with other windows as its units;
    without frames, the baselines that need them are skipped. They depend on the stack's
    configuration, never on its trained weights.

    The random-weights baseline is the top units of :data:`RANDOM_DRAWS` random stacks side by
    side, its unit chosen among all of them: one draw's best unit is a noisy figure (in a
    stack whose whitening is fitted on random features, float rounding alone moves it by
    several points: another draw), and the best of several is the harder baseline.

    The exemplar networks are drawn ``draws`` times, each draw scored on its own
    (:mod:`models.neurons.draws`): the second dict holds, per exemplar baseline, the responses
    of draws 2 to ``draws`` (draw 1 is in the first dict). They are drawn after everything
    else, so the first draws do not depend on ``draws``."""
    g = torch.Generator().manual_seed(seed)

    def top_units(s: RBMStack) -> np.ndarray:
        """The top stage's units of another stack of the same geometry, on the probe."""
        return top_stage_tables([s], images)[0]

    out = {}
    have = frames is not None and len(frames) > 0
    x = torch.from_numpy(frames) if have else None
    randomisable = have or not any(s.needs_data for s in stack.stages)
    random_draws = []
    if have:
        random0, filters, ex = first_draws(stack, x, n_filters, g)
        random_draws.append(top_units(random0))
        probe = stack.preprocess(torch.from_numpy(images))
        out["linear_filters"] = filter_responses(probe, filters).double().numpy()
        out.update(exemplar_networks(ex, x, images, g))
    if randomisable:  # the other draws last, so the exemplar stacks are drawn as before
        random_draws += [top_units(reweighted_stack(stack, x, "random", g))
                         for _ in range(RANDOM_DRAWS - len(random_draws))]
        out["random_weights"] = np.concatenate(random_draws, 1)
    more: dict[str, list[np.ndarray]] = {}
    for _ in range(draws - 1 if have else 0):
        ex = reweighted_stack(stack, x, "exemplar", g)
        for name, v in exemplar_networks(ex, x, images, g).items():
            more.setdefault(name, []).append(v)
    return out, more


def exemplar_networks(ex: RBMStack, x: torch.Tensor, images: np.ndarray,
                      generator: torch.Generator) -> dict[str, np.ndarray]:
    """The top units on ``images`` of one draw of the exemplar stack ``ex`` and, for a
    competitive top stage, of its spread exemplars (drawn from ``generator`` on ``x``)."""
    spread = spread_exemplar_stack(ex, x, generator)  # the exemplar stack's, other top units
    if spread is None:
        return {"exemplar_filters": top_stage_tables([ex], images)[0]}
    exemplar, spread = top_stage_tables([ex, spread], images)
    return {"exemplar_filters": exemplar, "spread_exemplar_filters": spread}


def mean_face_template(images: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """(N, 1) the reference: the mean of the faces the demo videos show, as a template under
    the paste path's oval mask, best normalised cross-correlation over positions and sizes
    spanning ``scale`` of the side."""
    from pipeline.demo_corpus import VIDEO_FACES, lfw_faces
    from pipeline.demo_paste import mask

    template = lfw_faces()[list(VIDEO_FACES)].astype(np.float64).mean(0)
    side = images.shape[2]
    sides = sorted({max(3, int(round(f * side)))
                    for f in np.linspace(scale[0], scale[1], N_TEMPLATE_SIDES)})
    return template_responses(images, template, sides, mask)


def always_negative(y: np.ndarray, splits: list) -> dict:
    """SCORE of predicting the negative class for every image (BA 0.5, AUC 0.5)."""
    acc = [float((y[t.numpy()] == 0).mean()) for _, t in splits]
    return {"accuracy": float((y == 0).mean()), "balanced_accuracy": 0.5, "auc": 0.5,
            "polarity": -1, "heldout_accuracy": float(np.mean(acc)),
            "heldout_balanced_accuracy": 0.5, "heldout_balanced_accuracy_std": 0.0,
            "heldout_auc": 0.5}


def linear_readout(values: np.ndarray, y: np.ndarray, seed: int = 0,
                   groups: np.ndarray | None = None) -> float | None:
    """5-fold cross-validated balanced accuracy of a logistic regression on standardised units
    (fewer folds when a class has fewer than 5 images or groups; None below 2). With
    ``groups`` the folds keep a group together: a face and its twin share a background, and a
    read-out trained on one would mislabel the other. The BLAS runs on one thread: these
    fits are small, and with torch and numba loaded a multi-threaded BLAS spends far longer
    waiting than computing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_folds = int(min(5, np.bincount(y).min()))
    if groups is not None:
        n_folds = min(n_folds, len(np.unique(groups)))
    if n_folds < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if groups is None:
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    else:
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        return float(cross_val_score(model, values, y, groups=groups, cv=cv,
                                     scoring="balanced_accuracy").mean())


def _maybe_round(v: float | None) -> float | None:
    """``v`` to 4 decimals (None stays None)."""
    return None if v is None else round(v, 4)


def _round(d: dict) -> dict:
    """Floats rounded to 4 decimals for a readable JSON."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def stage_entry(name: str, values: np.ndarray, y: np.ndarray, protocol: dict,
                splits: list) -> dict:
    """The contract's per-(stage, layer) entry: best unit, top-50 ranking (no read-out yet)."""
    stage, layer = name.split("/")
    best = best_unit_score(values, y, **protocol, splits=splits)
    held, whole = best["heldout"], best["whole"]
    order = torch.argsort(held.unit_balanced_accuracy, descending=True)[:N_RANKED]
    ranking = [{"index": int(j), "heldout_balanced_accuracy": round(float(
                    held.unit_balanced_accuracy[j]), 4),
                "auc": round(float(whole["auc"][j]), 4),
                "heldout_auc": round(float(held.unit_auc[j]), 4),
                "heldout_balanced_accuracy_std": round(
                    float(held.unit_balanced_accuracy_std[j]), 4),
                "polarity": int(whole["polarity"][j])} for j in order]
    return {"stage": int(stage), "layer": layer, "n_units": int(values.shape[1]),
            "normalised": layer in NORMALISED, "best": _round(best["score"]),
            "ranking": ranking}


def histograms(entries: list[dict], tables: dict[str, np.ndarray], labels: np.ndarray,
               classes: tuple[str, ...]) -> dict:
    """Response histograms per class for every ranked unit, bins shared per stage/layer."""
    bins, units = {}, {}
    for e in entries:
        key = f"{e['stage']}/{e['layer']}"
        v = tables[key]
        edges = np.linspace(float(v.min()), float(v.max()) + 1e-12, N_BINS + 1)
        bins[key] = [round(float(b), 6) for b in edges]
        for r in e["ranking"]:
            col = v[:, r["index"]]
            units[f"{key}/{r['index']}"] = {
                c: np.histogram(col[labels == i], edges)[0].tolist()
                for i, c in enumerate(classes)}
    return {"bins": bins, "units": units}




def stage0_score(stages: list[dict], values: np.ndarray, y: np.ndarray, protocol: dict,
                 splits: list) -> dict:
    """The stage-0 baseline's SCORE: the stage entry's own when stage 0 has one headline layer
    (the same units, labels and splits: the same figure, not scored twice)."""
    own = [e for e in stages if e["stage"] == 0 and e["layer"] in LAYERS]
    if len(own) == 1 and own[0]["n_units"] == values.shape[1]:
        return own[0]["best"]
    return score_sets({"stage0": values}, y, protocol, splits)["stage0"]


def score_sets(sets: dict[str, np.ndarray], y: np.ndarray, protocol: dict,
               splits: list) -> dict[str, dict]:
    """SCORE (plus ``index``) of the best unit of each named set of units."""
    return {name: _round(best_unit_score(v, y, **protocol, splits=splits)["score"])
            for name, v in sets.items()}


def best_neuron(tables: dict[str, np.ndarray], top: int, y: np.ndarray, protocol: dict,
                splits: list) -> tuple[dict, object]:
    """The top stage's best unit over its own responses (hidden, pooled), set-level held out,
    and the held-out record (per-split choices)."""
    values, names = top_set(tables, top)
    scored = best_unit_score(values, y, **protocol, splits=splits)
    score = _round(scored["score"])
    layer, index = names[score["index"]]
    held = scored["heldout"]
    stab = breakdown.stability(held, [f"{la}/{j}" for la, j in names])
    return {**score, "stage": top, "layer": layer, "index": index, "stability": stab}, held


def _breakdowns(probe, keep: np.ndarray, values: np.ndarray, y: np.ndarray, held,
                splits: list, scale: tuple[float, float]) -> dict:
    """``by_size`` and ``by_quadrant`` of the headline unit (None without boxes)."""
    if probe.boxes is None:
        return {"by_size": None, "by_quadrant": None}
    boxes, side = probe.boxes[keep], probe.images.shape[2]
    return {"by_size": breakdown.by_bin(values, y, held, splits,
                                        breakdown.size_bins(boxes, side, scale),
                                        breakdown.SIZE_BINS),
            "by_quadrant": breakdown.by_bin(values, y, held, splits,
                                            breakdown.quadrants(boxes, side),
                                            breakdown.QUADRANTS)}


def corpus_share(stack: RBMStack, best: dict, frames: np.ndarray | None,
                 kinds: list[str] | None, tops: dict[str, RunningTopK],
                 appearances: list[str] | None = None) -> dict:
    """Share of face frames among the headline unit's top :data:`TOP_FRAMES` training frames
    (highest responses), against the share of face frames in all of them (base rate).
    ``tops``: the top stage's :func:`~jobs.report.corpus_tops.corpus_tops` (a layer too wide
    for it is scored here). With ``appearances`` (one id per frame), also how many distinct
    appearances those frames come from, how many of them are faces, and how many face
    appearances all the frames hold: consecutive frames of one appearance are near copies,
    so 100 top frames can be a handful of sightings."""
    out = {"corpus_top100_face_share": None, "corpus_face_base_rate": None,
           **appearance_counts(None, None, None)}
    if frames is None or kinds is None or len(frames) < TOP_FRAMES:
        return out
    if best["layer"] in tops:
        top = tops[best["layer"]].ids[best["index"], :TOP_FRAMES].numpy()
    else:
        r = unit_response(stack, frames, best["stage"], best["layer"], best["index"])
        top = np.argsort(-r, kind="stable")[:TOP_FRAMES]
    face = np.asarray(kinds) == "face"
    return {"corpus_top100_face_share": round(float(face[top].mean()), 4),
            "corpus_face_base_rate": round(float(face.mean()), 4),
            **appearance_counts(top, kinds, appearances)}


def appearance_counts(top: np.ndarray | None, kinds: list[str] | None,
                      appearances: list[str] | None) -> dict:
    """Distinct appearances among the frames ``top`` (row indices), the face ones among them,
    and the face appearances of all rows; None each without ``appearances``."""
    if top is None or kinds is None or appearances is None:
        return {"corpus_top100_appearances": None, "corpus_top100_face_appearances": None,
                "corpus_face_appearances": None}
    seen = {(appearances[i], kinds[i]) for i in top.tolist()}
    return {"corpus_top100_appearances": len(seen),
            "corpus_top100_face_appearances": sum(k == "face" for _, k in seen),
            "corpus_face_appearances": len({a for a, k in zip(appearances, kinds, strict=True)
                                            if k == "face"})}


def headline(probe, positive: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Which images the headline scores: ``keep`` (N,) bool, ``y`` (kept,) 0/1 and the
    negative classes (the probe's ``negatives`` for its first class, else every other)."""
    pos = probe.classes.index(positive)
    if probe.negatives and positive == probe.classes[0]:
        negatives = list(probe.negatives)
    else:
        negatives = [c for c in probe.classes if c != positive]
    ids = [pos, *(probe.classes.index(c) for c in negatives)]
    keep = np.isin(probe.labels, ids)
    return keep, (probe.labels[keep] == pos).astype(np.int64), negatives


def held_out(y: np.ndarray, protocol: dict, groups: np.ndarray | None,
             choose: np.ndarray | None) -> tuple[list, dict]:
    """The (choose, test) index pairs and the keyword arguments that score on them: the one
    fixed division ``choose`` (N,) bool when given, scored with ``groups`` (the chosen unit's
    spread: a bootstrap over them, :func:`models.neurons.selectivity.heldout_scores`), else
    ``protocol["n_splits"]`` random halves keeping each of ``groups`` on one side."""
    if choose is not None:
        return fixed_split(choose), {**protocol, "groups": groups}
    return stratified_halves(y, protocol["n_splits"], protocol["seed"], groups), protocol


def one_vs_rest(tables: dict[str, np.ndarray], base: dict[str, np.ndarray], y: np.ndarray,
                top: int, protocol: dict, groups: np.ndarray | None,
                choose: np.ndarray | None = None) -> dict:
    """``best_neuron`` and ``baselines`` for labels ``y`` (1 = the class, every image); a
    baseline of more than ``PER_CLASS_MAX_UNITS`` units is scored for the headline class
    only (a tied stage 0 has tens of thousands). ``choose``: :func:`held_out`'s."""
    splits, protocol = held_out(y, protocol, groups, choose)
    small = {k: v for k, v in base.items() if v.shape[1] <= PER_CLASS_MAX_UNITS}
    baselines = {"always_negative": always_negative(y, splits),
                 **score_sets(small, y, protocol, splits)}
    best = best_neuron(tables, top, y, protocol, splits)[0]
    best.pop("stability")
    return {"best_neuron": best, "baselines": baselines}


def _probe_entry(probe, positive: str, negatives: list[str], part: str,
                 confound: float | None) -> dict:
    return {"source": probe.source, "positive": positive, "negatives": negatives, "part": part,
            "classes": probe.counts(), "confound_balanced_accuracy": _maybe_round(confound),
            "confound_limit": CONFOUND_LIMIT,
            "confound_warning": confound is not None and confound > CONFOUND_LIMIT}


def baseline_scores(base: dict[str, np.ndarray], more: dict[str, list[np.ndarray]],
                    keep: np.ndarray, y: np.ndarray, scoring: dict, splits: list) -> dict:
    """SCOREs of the baselines of :func:`baseline_tables` (but stage 0) on the images
    ``keep``; a baseline drawn several times scores the mean of its draws
    (:func:`models.neurons.draws.drawn_score`, draw 1 from ``base``, the others ``more``)."""
    scored = score_sets({k: v[keep] for k, v in base.items() if k != "stage0"}, y, scoring,
                        splits)
    for k, vs in more.items():
        later = score_sets({str(i): v[keep] for i, v in enumerate(vs)}, y, scoring, splits)
        scored[k] = drawn_score([scored[k], *later.values()])
    return scored


def report(stack: RBMStack, probe, positive: str,
           frames: np.ndarray | None, *, frame_kinds: list[str] | None = None,
           frame_appearances: list[str] | None = None,
           tops: dict[str, RunningTopK] | None = None,
           n_filters: int = 1000, protocol: dict | None = None, part: str = "report",
           choose_on: str | None = None, draws: int = EXEMPLAR_DRAWS,
           baseline_cache: BaselineCache | None = None,
           progress=lambda it, **kw: it) -> dict:
    """The whole ``evaluation.json`` for ``probe`` (a :class:`pipeline.probe.Probe`, already cut
    to ``part``); ``positive`` one of its classes; ``frames`` uint8 training frames for the
    filter baselines and the corpus share (``None``: skipped), ``frame_kinds`` their corpus
    labels (``None``: no corpus share) and ``frame_appearances`` their appearance ids
    (``pipeline.demo_corpus.frame_appearances``; ``None``: not counted); ``tops`` the top
    stage's top frames in ``frames`` (:func:`jobs.report.corpus_tops.corpus_tops` with
    ``k >= TOP_FRAMES``; computed here when needed and not given); ``progress`` wraps an
    iterable (e.g. tqdm). ``choose_on``: a part of the probe (e.g. ``"tune"``; the probe then
    holds every part) on which each unit, polarity and threshold are chosen, measured on the
    rest: one fixed split instead of ``protocol["n_splits"]`` random halves. ``draws``: how
    many times each exemplar network is drawn (:func:`baseline_tables`); its headline figure
    is the mean over the draws (:func:`models.neurons.draws.drawn_score`), and the per-class
    tables score its first draw. ``baseline_cache``: where the drawn baselines are read from,
    or written to once computed (:mod:`jobs.report.baseline_cache`; None: computed)."""
    from pipeline.demo_corpus import Layout

    protocol = protocol or {"n_splits": 20, "n_thresholds": 20, "seed": 0}
    choose = None
    if choose_on is not None:
        if probe.parts is None or not np.isin(choose_on, probe.parts):
            raise ValueError(f"the probe has no {choose_on!r} part to choose on")
        choose = probe.parts == choose_on
        protocol = {**protocol, "n_splits": 1}
    top, scale = stack.n_layers - 1, Layout().scale
    if tops is None and frames is not None and frame_kinds is not None:
        tops = corpus_tops(stack, frames, top, TOP_FRAMES)
    tables = unit_tables(stack, probe.images)
    base, more = baseline_tables(stack, probe.images, frames, n_filters, protocol["seed"],
                                 tables, draws, baseline_cache)
    keep, y, negatives = headline(probe, positive)
    groups = None if probe.groups is None else probe.groups[keep]
    splits, scoring = held_out(y, protocol, groups, None if choose is None else choose[keep])
    t_h = {k: v[keep] for k, v in tables.items()}
    stages = [stage_entry(name, v, y, scoring, splits)
              for name, v in progress(t_h.items(), desc="units", total=len(t_h))]
    readout = {"pixels": linear_readout(base["best_pixel"][keep], y, protocol["seed"], groups)}
    for e in progress(stages, desc="read-out"):
        v = t_h[f"{e['stage']}/{e['layer']}"]
        e["linear_readout_balanced_accuracy"] = (None if v.shape[1] > MAX_READOUT_UNITS else
                                                 _maybe_round(linear_readout(
                                                     v, y, protocol["seed"], groups)))
        if e["layer"] == "pooled":
            readout[f"stage{e['stage']}"] = e["linear_readout_balanced_accuracy"]
    best, held = best_neuron(t_h, top, y, scoring, splits)
    best.update(_breakdowns(probe, keep, top_set(t_h, top)[0], y, held, splits, scale))
    best.update(corpus_share(stack, best, frames, frame_kinds, tops or {}, frame_appearances))
    scored = baseline_scores(base, more, keep, y, scoring, splits)
    baselines = {"always_negative": always_negative(y, splits), **scored,
                 "stage0": stage0_score(stages, base["stage0"][keep], y, scoring, splits)}
    reference = {"mean_face_template": None}
    if positive == "faces":
        ref = mean_face_template(probe.images[keep], scale)
        reference = score_sets({"mean_face_template": ref}, y, scoring, splits)
    confound = confound_balanced_accuracy(probe.images[keep], y, groups, protocol["seed"])
    ys = {c: (probe.labels == i).astype(np.int64) for i, c in enumerate(probe.classes)}
    per_class = {c: one_vs_rest(tables, base, yc, top, protocol, probe.groups, choose)
                 for c, yc in progress(ys.items(), desc="classes", total=len(ys))}
    return {
        "schema": 1,
        "probe": _probe_entry(probe, positive, negatives, part, confound),
        "protocol": protocol if choose_on is None else {**protocol, "choose_on": choose_on},
        "verdict": verdict(best, baselines, _maybe_round(confound), positive),
        "best_neuron": best,
        "baselines": baselines,
        "reference": reference,
        "stages": stages,
        "linear_readout": {k: _maybe_round(v) for k, v in readout.items()},
        "histograms": histograms(stages, tables, probe.labels, probe.classes),
        "per_class": per_class,
    }
