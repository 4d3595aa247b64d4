"""Benchmark: how a run's headline unit ranks the demo corpus's *appearances*, not its frames.

The demo corpus shows each pasted face or non-face for a stretch of consecutive frames, and
consecutive frames are near copies, so "100 % faces among the top 100 frames" can be a handful
of sightings. Here every frame is grouped into its appearance
(:func:`pipeline.demo_corpus.frame_appearances`: one pasted patch's stretch, or one run of bare
frames), each appearance scored by its strongest frame, and the appearances ranked:

- ``face_share_top_k``: face appearances among the top k, for k = 10, 25 and the number of face
  appearances F (at k = F this is the R-precision; a ranking by chance gives F / all);
- ``auc``: ROC AUC of face appearances against all the others (scikit-learn).

The unit is the one ``catneuron evaluate`` chose (``RUN/evaluation.json``'s ``best_neuron``);
nothing here chooses anything. Usage::

    python benchmarks/face_appearances.py --runs RUN [RUN ...] --out benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from results_file import cli, command_line, emit
from sklearn.metrics import roc_auc_score

from jobs.evaluate import load_run, training_frames
from jobs.report.evaluation import unit_response


def appearance_ranking(responses: np.ndarray, kinds: list[str], appearances: list[str]) -> dict:
    """Figures of the appearances ranked by their strongest frame's response (N,)."""
    best: dict[str, float] = {}
    kind: dict[str, str] = {}
    for r, k, a in zip(responses.tolist(), kinds, appearances, strict=True):
        best[a] = max(r, best.get(a, -np.inf))
        kind[a] = k
    names = sorted(best, key=lambda a: -best[a])
    face = np.array([kind[a] == "face" for a in names])
    n_face = int(face.sum())
    return {"appearances": len(names), "face_appearances": n_face,
            "chance_share": round(n_face / len(names), 4),
            "face_share_top_k": {str(k): round(float(face[:k].mean()), 4)
                                 for k in (10, 25, n_face) if 0 < k <= len(names)},
            "auc": round(float(roc_auc_score(face, [best[a] for a in names])), 4)}


def measure(run: Path) -> dict:
    """The ranking of ``run``'s headline unit over its training corpus."""
    cfg, stack = load_run(str(run))
    best = json.loads((run / "evaluation.json").read_text())["best_neuron"]
    frames, kinds, appearances = training_frames(cfg)
    if kinds is None or appearances is None:
        raise SystemExit(f"{run}: its dataset is not the demo corpus (no appearance record)")
    r = unit_response(stack, frames, best["stage"], best["layer"], best["index"])
    return {"run": str(run), "unit": f"stage {best['stage']} {best['layer']} #{best['index']}",
            "probe_heldout_balanced_accuracy": best["heldout_balanced_accuracy"],
            "frames": len(frames), **appearance_ranking(r, kinds, appearances)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="catneuron train runs")
    ap.add_argument("--out", type=Path, help="write the JSON here")
    args = ap.parse_args(argv)
    doc = {"benchmark": "face_appearances", "command": command_line(),
           "runs": [measure(run) for run in args.runs]}
    emit(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
