"""A fake but valid run folder for the gallery tests, following jobs/RUN_FILES.md exactly.

``make_run(root)`` writes ``root/data/_manifest.json`` (ok and failed sources) and ``root/run/``
with ``config.toml`` (the demo config, resolved by ``jobs.config``), ``metrics.jsonl``,
``evaluation.json`` and ``visualize/`` (index, two stage files, real PNGs written with OpenCV and
matplotlib). It plants hostile inputs the gallery must survive: a source named
:data:`HOSTILE_SOURCE`, a probe class named :data:`HOSTILE_CLASS`, image paths that try to leave
the run folder or do not exist, a unit with no invariance, one with curves but no PNG.

The evaluation's headline (its ``verdict``, as ``catneuron evaluate`` writes it) is a *hidden*
unit, stage 1 hidden #4, while stage 1 also shows pooled #4: two units with one index, which
must get two pages. Every unit's own figure differs from its set's figure, as in a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HOSTILE_SOURCE = "<img src=x onerror=alert(1)>"
HOSTILE_CLASS = "<script>alert(1)</script>"
CLASSES = {"faces": 50, HOSTILE_CLASS: 120, "other": 80}
REPO = Path(__file__).resolve().parents[2]
BINS = [round(-1.0 + 0.2 * k, 3) for k in range(11)]
STAGE_SHAPES = {0: [2, 3, 3], 1: [2, 2, 2]}
LISTED = {0: list(range(18)), 1: [5, 2, 3, 7, 4]}
HIDDEN = {1: [4, 6]}  # stage 1 hidden units shown (hidden maps 2 x 3 x 3)
HIDDEN_SHAPE = [2, 3, 3]
BEST = {"stage": 1, "layer": "hidden", "index": 4}
VERDICT_TEXT = ("face unit: stage 1 hidden #4 (0.810 ± 0.030 held out, AUC 0.880) leads every "
                "baseline, the strongest linear_filters by 0.150, more than its spread; probe "
                "confound 0.55.")


def score(ba: float, auc: float, std: float = 0.03) -> dict:
    """A SCORE dict with held-out and whole-probe figures."""
    return {"accuracy": ba + 0.05, "balanced_accuracy": ba + 0.02, "auc": auc + 0.01,
            "heldout_accuracy": ba + 0.04, "heldout_balanced_accuracy": ba,
            "heldout_balanced_accuracy_std": std, "heldout_auc": auc, "polarity": 1}


def baselines() -> dict:
    return {"always_negative": score(0.5, 0.5, 0.0), "best_pixel": score(0.58, 0.61),
            "random_weights": score(0.62, 0.66), "linear_filters": score(0.66, 0.7),
            "stage0": score(0.64, 0.69)}


def _png(path: Path, img: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path.name


def _plot(path: Path, xs, ys, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=60)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, ys)
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def write_manifest(data: Path) -> None:
    """A dataset manifest with two ok and two failed sources (one with a hostile name)."""
    data.mkdir(parents=True, exist_ok=True)
    videos = [
        {"source": "clips/street.mp4", "status": "ok", "frames": 100, "error": None,
         "shards": ["street-1.parquet"]},
        {"source": "https://example.org/cats.mp4", "status": "ok", "frames": 60, "error": None,
         "shards": ["cats-2.parquet"]},
        {"source": HOSTILE_SOURCE, "status": "failed", "frames": 0,
         "error": "cannot open as a video (cv2.VideoCapture failed)", "shards": []},
        {"source": "https://example.org/gone.mp4", "status": "failed", "frames": 0,
         "error": "HTTP Error 404: Not Found", "shards": []},
    ]
    shards = [{"path": "street-1.parquet", "rows": 100, "sha256": "0" * 64},
              {"path": "cats-2.parquet", "rows": 60, "sha256": "1" * 64}]
    manifest = {"schema_version": 1, "shards": shards, "videos": videos,
                "options": {"input_size": 64, "channels": 1, "every": 1}}
    (data / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def write_config_and_metrics(run: Path, data: Path) -> None:
    """The demo config resolved for this run, and two stages of metrics from two workers."""
    from jobs.config import dumps, load

    run.mkdir(parents=True, exist_ok=True)
    config = load("demo",
                  [f"data.path={json.dumps(str(data))}", f"train.run_dir={json.dumps(str(run))}"])
    (run / "config.toml").write_text(dumps(config))
    lines = []
    for stage in (0, 1):
        for step in range(0, 100, 10):
            for worker in (0, 1):
                lines.append(json.dumps({"stage": stage, "step": step, "worker": worker,
                                         "recon_error": 0.6 - 0.002 * step + 0.01 * worker,
                                         "fe_gap": 0.1 + 0.001 * step}))
    lines.append("{not json")
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _ranking(stage: int, layer: str = "pooled") -> list[dict]:
    """Each unit's own held-out figure (ranking entries), best first; ``auc`` is whole-probe."""
    units = (LISTED if layer == "pooled" else HIDDEN)[stage][:6]
    top = 0.8 if layer == "pooled" else 0.84
    return [{"index": i, "heldout_balanced_accuracy": top - 0.03 * r,
             "heldout_balanced_accuracy_std": 0.02 + 0.001 * r, "heldout_auc": 0.86 - 0.03 * r,
             "auc": 0.88 - 0.03 * r, "polarity": 1} for r, i in enumerate(units)]


def verdict(face_unit: bool = True) -> dict:
    """The contract's ``verdict`` object (CONTRACT: written by ``catneuron evaluate``)."""
    return {"face_unit": face_unit, "text": VERDICT_TEXT,
            "best": {**BEST, "polarity": 1, "balanced_accuracy": 0.81, "std": 0.03,
                     "auc": 0.88},
            "winner": None, "probe_confound": 0.55}


def write_evaluation(run: Path) -> None:
    """``evaluation.json`` with a face unit that beats every baseline, per-class entries (one
    class hostile) and histograms for the ranked units."""
    stages = [{"stage": s, "layer": "pooled", "n_units": int(np.prod(STAGE_SHAPES[s])),
               "best": score(0.7 + 0.1 * s, 0.8) | {"index": LISTED[s][0]},
               "linear_readout_balanced_accuracy": 0.85, "ranking": _ranking(s)}
              for s in (0, 1)]
    stages.append({"stage": 1, "layer": "hidden", "n_units": int(np.prod(HIDDEN_SHAPE)),
                   "best": score(0.81, 0.88) | {"index": BEST["index"]},
                   "linear_readout_balanced_accuracy": 0.8, "ranking": _ranking(1, "hidden")})
    rng = np.random.default_rng(1)
    hist = {f"{e['stage']}/{e['layer']}/{r['index']}": {
                c: rng.integers(0, 20, len(BINS) - 1).tolist() for c in CLASSES}
            for e in stages for r in e["ranking"]}
    per_class = {c: {"best_neuron": score(0.6 + 0.05 * k, 0.65) | {"stage": 1, "layer": "pooled",
                                                                    "index": LISTED[1][k]},
                     "baselines": baselines()} for k, c in enumerate(CLASSES)}
    evaluation = {
        "schema": 1,
        "probe": {"source": "builtin", "positive": "faces", "classes": CLASSES},
        "protocol": {"n_thresholds": 20, "n_splits": 20, "seed": 0},
        "verdict": verdict(),
        "best_neuron": score(0.81, 0.88) | BEST | {"corpus_top100_face_share": 0.22,
                                                   "corpus_face_base_rate": 0.33,
                                                   "corpus_top100_appearances": 9,
                                                   "corpus_top100_face_appearances": 2,
                                                   "corpus_face_appearances": 40},
        "baselines": baselines(), "stages": stages,
        "linear_readout": {"pixels": 0.95, "stage0": 0.9, "stage1": 0.74},
        "histograms": {"bins": BINS, "units": hist},
        "per_class": per_class,
    }
    (run / "evaluation.json").write_text(json.dumps(evaluation, indent=1))


def _unit(vis: Path, stage: int, index: int, rng: np.random.Generator,
          layer: str = "pooled") -> dict:
    """One unit's entry with real PNGs: weights, three top frames with a box, optimal
    stimulus, invariance."""
    c, h, w = STAGE_SHAPES[stage] if layer == "pooled" else HIDDEN_SHAPE
    d = f"stage{stage}"
    stem = f"unit{index}" if layer == "pooled" else f"{layer}{index}"
    grey = (rng.random((10, 10)) * 255).astype(np.uint8)
    _png(vis / d / f"{stem}_weights.png", grey)
    _png(vis / d / f"{stem}_optimal.png", 255 - grey)
    frames = []
    for k in range(3):
        frame = (rng.random((64, 64)) * 200).astype(np.uint8)
        cv2.rectangle(frame, (8 + k, 8), (40, 40), 255, 1)
        # upscaled 2x, as visualize does for small frames: the box stays in frame pixels
        _png(vis / d / f"{stem}_top{k}.png",
             cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
        frames.append({"png": f"{d}/{stem}_top{k}.png", "source": "clips/street.mp4",
                       "frame_index": 10 * k, "activation": 0.9 - 0.1 * k,
                       "box": [8, 8 + k, 40, 40]})
    curves = {"scale": [[0.5, 0.2], [1.0, 0.9], [1.5, 0.4]],
              "rotation": [[-30, 0.3], [0, 0.9], [30, 0.35]],
              "translation": [[-4, 0.5], [0, 0.9], [4, 0.6]]}
    _plot(vis / d / f"{stem}_invariance.png", [0.5, 1, 1.5], [0.2, 0.9, 0.4], "scale")
    rank = {r["index"]: r for r in _ranking(stage, layer)}.get(index)
    return {"index": index, "layer": layer, "map": index // (h * w), "y": (index % (h * w)) // w,
            "x": index % w,
            "selectivity": None if rank is None else {
                k: rank[k] for k in ("heldout_balanced_accuracy",
                                     "heldout_balanced_accuracy_std", "heldout_auc")},
            "weights_png": f"{d}/{stem}_weights.png", "top_frames": frames,
            "optimal_stimulus": {"png": f"{d}/{stem}_optimal.png", "activation": 0.99,
                                 "n_starts": 4},
            "invariance": {"png": f"{d}/{stem}_invariance.png", "curves": curves}}


def _hostile_units(units: dict[int, dict]) -> None:
    """Unit 0 refers outside the run and to missing files; unit 1 has curves but no PNG;
    unit 2's top frame comes from a hostile source; unit 3 has no invariance."""
    units[0]["weights_png"] = "../../../../etc/passwd"
    units[0]["top_frames"][0]["png"] = "/etc/hostname"
    units[0]["optimal_stimulus"]["png"] = "stage0/does_not_exist.png"
    units[1]["invariance"]["png"] = None
    units[2]["top_frames"][1]["source"] = HOSTILE_SOURCE
    units[3]["invariance"] = None


def write_visualize(run: Path) -> None:
    """``visualize/index.json``, ``stage0.json`` (all 18 units) and ``stage1.json`` (4)."""
    vis = run / "visualize"
    rng = np.random.default_rng(0)
    for stage in (0, 1):
        units = {i: _unit(vis, stage, i, rng) for i in LISTED[stage]}
        if stage == 0:
            _hostile_units(units)
        hidden = [_unit(vis, stage, i, rng, "hidden") for i in HIDDEN.get(stage, [])]
        mosaic = (rng.random((3 * 11, 6 * 11)) * 255).astype(np.uint8)
        _png(vis / f"stage{stage}" / "mosaic.png", cv2.resize(mosaic, None, fx=4, fy=4,
                                                              interpolation=cv2.INTER_NEAREST))
        doc = {"schema": 1, "stage": stage, "layer": "pooled", "shape": STAGE_SHAPES[stage],
               "mosaic_png": f"stage{stage}/mosaic.png", "units": list(units.values()) + hidden}
        (vis / f"stage{stage}.json").write_text(json.dumps(doc, indent=1))
    _plot(vis / "curves" / "recon_error.png", range(10), np.linspace(0.6, 0.4, 10),
          "reconstruction error")
    index = {"schema": 1, "stages": [{"stage": 0, "file": "stage0.json"},
                                     {"stage": 1, "file": "stage1.json"}],
             "curves": [{"title": "reconstruction error", "png": "curves/recon_error.png"}],
             "top_frames_min_gap": 30, "top_frames_pool": 12}
    (vis / "index.json").write_text(json.dumps(index, indent=1))


def make_run(root: Path) -> Path:
    """Write the dataset and the run under ``root``; returns the run folder."""
    data, run = root / "data", root / "run"
    write_manifest(data)
    write_config_and_metrics(run, data)
    write_evaluation(run)
    write_visualize(run)
    return run
