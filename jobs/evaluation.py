"""What ``catneuron evaluate`` computes: every unit's selectivity and the baselines, as JSON.

Steps (the CLI in :mod:`jobs.evaluate` only parses, runs these, prints and writes):

1. :func:`unit_tables` - responses (N, units) of each stage's pooled output and hidden
   probabilities (the contract's ``layer`` = ``"pooled"`` / ``"hidden"``) for the probe;
2. :func:`baseline_tables` - the same for the baselines: raw pixels, the stack with its random
   initial weights (same geometry and ``train.seed``: the trainer's initialisation), the best of
   ``n_filters`` whole-frame linear filters from training frames (``models.neurons.baselines``), and
   stage 0;
3. :func:`report` - ``models.neurons.selectivity`` scores of each set (Le et al.'s 20 thresholds on
the
   whole probe, and held out: unit, polarity and threshold chosen on one stratified half), the
   top-50 ranking and response histograms per stage and layer, and a cross-validated logistic
   read-out per stage (scikit-learn), one-vs-rest for every class.

Feature extraction runs in this process: the model is read once and a probe of a few hundred
images needs one up-pass, cheaper than starting Ray actors that would each read the model
(the measured comparison is in the face-neuron report, not here).
"""

from __future__ import annotations

import numpy as np
import torch

from models.neurons.baselines import filter_responses, patch_filters
from models.neurons.selectivity import best_unit_score, stratified_halves
from models.stack import RBMStack

LAYERS = ("pooled", "hidden")
N_RANKED = 50
N_BINS = 20


def unit_tables(stack: RBMStack, images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """``{"<stage>/<layer>": (N, units) float64}`` for every stage; C-major (map, y, x) order."""
    x = torch.from_numpy(images)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        for k, rbm in enumerate(stack.rbms):
            hidden = rbm.mean_hiddens(stack.stage_input(xb, k))  # (n, K, Ph, Pw)
            pooled = stack.transform(xb, k)  # (n, K, S, S)
            parts.setdefault(f"{k}/pooled", []).append(pooled.flatten(1).double().numpy())
            parts.setdefault(f"{k}/hidden", []).append(hidden.flatten(1).double().numpy())
    return {name: np.concatenate(p) for name, p in parts.items()}


def top_set(tables: dict[str, np.ndarray], stage: int) -> tuple[np.ndarray, list[tuple]]:
    """One stage's pooled and hidden units side by side, with (layer, index) of each column."""
    cols, names = [], []
    for layer in LAYERS:
        v = tables[f"{stage}/{layer}"]
        cols.append(v)
        names += [(layer, j) for j in range(v.shape[1])]
    return np.concatenate(cols, 1), names


def baseline_tables(stack: RBMStack, random_stack: RBMStack, images: np.ndarray,
                    frames: np.ndarray | None, n_filters: int, seed: int,
                    tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Responses of each baseline's units (always-negative is scored directly)."""
    top = stack.n_layers - 1
    out = {"best_pixel": images.reshape(len(images), -1).astype(np.float64),
           "random_weights": top_set(unit_tables(random_stack, images), top)[0],
           "stage0": top_set(tables, 0)[0]}
    if frames is not None and len(frames):
        g = torch.Generator().manual_seed(seed)
        pre = stack.preprocess(torch.from_numpy(frames))
        filters = patch_filters(pre, n_filters, stack.config.input_size, g)
        probe = stack.preprocess(torch.from_numpy(images))
        out["linear_filters"] = filter_responses(probe, filters).double().numpy()
    return out


def always_negative(y: np.ndarray, n_splits: int, seed: int) -> dict:
    """SCORE of predicting the negative class for every image (BA 0.5, AUC 0.5)."""
    tests = [t.numpy() for _, t in stratified_halves(y, n_splits, seed)]
    acc = [float((y[t] == 0).mean()) for t in tests]
    return {"accuracy": float((y == 0).mean()), "balanced_accuracy": 0.5, "auc": 0.5,
            "polarity": -1, "heldout_accuracy": float(np.mean(acc)),
            "heldout_balanced_accuracy": 0.5, "heldout_balanced_accuracy_std": 0.0,
            "heldout_auc": 0.5}


def linear_readout(values: np.ndarray, y: np.ndarray, seed: int = 0) -> float | None:
    """5-fold cross-validated balanced accuracy of a logistic regression on standardised units
    (fewer folds when a class has fewer than 5 images; None below 2)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_folds = int(min(5, np.bincount(y).min()))
    if n_folds < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, values, y, cv=cv, scoring="balanced_accuracy").mean())


def _maybe_round(v: float | None) -> float | None:
    """``v`` to 4 decimals (None stays None)."""
    return None if v is None else round(v, 4)


def _round(d: dict) -> dict:
    """Floats rounded to 4 decimals for a readable JSON."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def stage_entry(name: str, values: np.ndarray, y: np.ndarray, protocol: dict) -> dict:
    """The contract's per-(stage, layer) entry: best unit, top-50 ranking (no read-out yet)."""
    stage, layer = name.split("/")
    best = best_unit_score(values, y, **protocol)
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
            "best": _round(best["score"]), "ranking": ranking}


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


def score_sets(sets: dict[str, np.ndarray], y: np.ndarray, protocol: dict) -> dict[str, dict]:
    """SCORE (plus ``index``) of the best unit of each named set of units."""
    return {name: _round(best_unit_score(v, y, **protocol)["score"]) for name, v in sets.items()}


def best_neuron(tables: dict[str, np.ndarray], top: int, y: np.ndarray, protocol: dict) -> dict:
    """The top stage's best unit over both layers (set-level held-out protocol)."""
    values, names = top_set(tables, top)
    score = _round(best_unit_score(values, y, **protocol)["score"])
    layer, index = names[score["index"]]
    return {**score, "stage": top, "layer": layer, "index": index}


def one_vs_rest(tables: dict[str, np.ndarray], base: dict[str, np.ndarray], y: np.ndarray,
                top: int, protocol: dict) -> dict:
    """``best_neuron`` and ``baselines`` for labels ``y`` (1 = the class)."""
    baselines = {"always_negative": always_negative(y, protocol["n_splits"], protocol["seed"]),
                 **score_sets(base, y, protocol)}
    return {"best_neuron": best_neuron(tables, top, y, protocol), "baselines": baselines}


def report(stack: RBMStack, random_stack: RBMStack, probe, positive: str,
           frames: np.ndarray | None, *, n_filters: int = 1000, protocol: dict | None = None,
           progress=lambda it, **kw: it) -> dict:
    """The whole ``evaluation.json`` (without its ``probe.source`` path rewriting).

    ``probe`` is a :class:`pipeline.probe.Probe`; ``positive`` one of its classes; ``frames``
    uint8 training frames for the linear-filter baseline (``None``: that baseline is skipped);
    ``progress`` wraps an iterable (e.g. tqdm).
    """
    protocol = protocol or {"n_splits": 20, "n_thresholds": 20, "seed": 0}
    top = stack.n_layers - 1
    tables = unit_tables(stack, probe.images)
    base = baseline_tables(stack, random_stack, probe.images, frames, n_filters,
                           protocol["seed"], tables)
    ys = {c: (probe.labels == i).astype(np.int64) for i, c in enumerate(probe.classes)}
    y = ys[positive]
    stages = [stage_entry(name, v, y, protocol)
              for name, v in progress(tables.items(), desc="units", total=len(tables))]
    readout = {"pixels": linear_readout(base["best_pixel"], y, protocol["seed"])}
    for e in progress(stages, desc="read-out"):
        e["linear_readout_balanced_accuracy"] = _maybe_round(
            linear_readout(tables[f"{e['stage']}/{e['layer']}"], y, protocol["seed"]))
        if e["layer"] == "pooled":
            readout[f"stage{e['stage']}"] = e["linear_readout_balanced_accuracy"]
    per_class = {c: one_vs_rest(tables, base, yc, top, protocol)
                 for c, yc in progress(ys.items(), desc="classes", total=len(ys))}
    return {
        "schema": 1,
        "probe": {"source": probe.source, "positive": positive, "classes": probe.counts()},
        "protocol": protocol,
        "best_neuron": per_class[positive]["best_neuron"],
        "baselines": per_class[positive]["baselines"],
        "stages": stages,
        "linear_readout": {k: _maybe_round(v) for k, v in readout.items()},
        "histograms": histograms(stages, tables, probe.labels, probe.classes),
        "per_class": per_class,
    }
