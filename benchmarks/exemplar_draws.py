"""Which training window wins the exemplar baseline? Its best unit's top corpus frames, for
several of the evaluation's draws.

``catneuron evaluate`` draws the exemplar network (the trained stack's architecture with random
training windows as its top stage's units, :func:`models.neurons.baselines.reweighted_stack`)
with its ``--seed``, and the figure moves a great deal between draws. This rebuilds the
exemplar network of each given evaluation seed (:func:`jobs.report.evaluation.first_draws`,
the draws the evaluation makes), takes the
exemplar unit the evaluation chose (``baselines.exemplar_filters.index`` of the given
``face_demo`` record), and counts the face frames among that unit's 100 most responsive
training frames (demo corpus labels), and their distinct appearances::

    python benchmarks/exemplar_draws.py --run RUN --records \\
        benchmarks/results/face_demo/demo_evalseed0.json \\
        benchmarks/results/face_demo/demo_evalseed3.json \\
        --out benchmarks/results/exemplar_draws.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from results_file import cli, emit

from jobs.evaluate import load_run, training_frames
from jobs.report import corpus_tops as ct
from jobs.report.evaluation import first_draws

TOP = 100
N_FILTERS = 1000  # catneuron evaluate's --filters default


def exemplar_stack(stack, frames: np.ndarray, seed: int):
    """The exemplar network ``catneuron evaluate --seed SEED`` scores."""
    return first_draws(stack, torch.from_numpy(frames), N_FILTERS,
                       torch.Generator().manual_seed(seed))[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the trained run the records scored")
    p.add_argument("--records", nargs="+", required=True,
                   help="benchmarks/face_demo.py records of that run (--eval-seed S)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    cfg, stack = load_run(args.run)
    frames, kinds, appearances = training_frames(cfg)
    if kinds is None:
        raise SystemExit(f"{cfg.data.path}: no demo corpus labels to count faces with")
    face, appearances = np.asarray(kinds) == "face", np.asarray(appearances)
    rows = []
    for path in args.records:
        record = json.loads(open(path).read())
        seed, best = record["protocol"]["seed"], record["baselines"]["exemplar_filters"]
        ex = exemplar_stack(stack, frames, seed)
        tops = ct.corpus_tops(ex, frames, ex.n_layers - 1, TOP)
        ids = tops["pooled"].ids[best["index"], :TOP].numpy()
        rows.append({"record": path, "evaluation_seed": seed, "exemplar_unit": best["index"],
                     "heldout_balanced_accuracy": best["heldout_balanced_accuracy"],
                     f"top{TOP}_face_share": round(float(face[ids].mean()), 3),
                     f"top{TOP}_appearances": len(set(appearances[ids].tolist())),
                     "face_base_rate": round(float(face.mean()), 3)})
        print(rows[-1])
    emit({"what": "the exemplar baseline's chosen unit at each evaluation seed: face frames "
                  f"among its top {TOP} training frames", "run": args.run, "draws": rows},
         args.out)
    return 0


if __name__ == "__main__":
    cli(main)
