"""Are a run's best face units copies of one another? Pairwise cosines of their weights.

A competitive top stage can hold several units that detect faces about equally well, and which
of them the held-out protocol chooses then moves from split to split (the issue's "same unit in
half the splits"). If they were near copies (cosine near 1) merging duplicate centroids would
settle the choice; if they are near orthogonal they answer different windows. This takes the
``--top`` units of the top stage's ranking in the run's ``evaluation.json`` (held-out balanced
accuracy, best first) and writes the cosines between their unit weights ``u_k`` (what each
unit's response dots with a whitened window), each one's nearest other unit of the whole stage,
and the median nearest-neighbour cosine over all units for scale::

    python benchmarks/face_unit_overlap.py --run runs/demo/train \\
        --out benchmarks/results/face_unit_overlap.json
"""

from __future__ import annotations

import argparse
import json

import torch
from results_file import cli, emit

from jobs.evaluate import load_run
from models.competitive.spherical_kmeans import normalise_rows
from pipeline import storage


def overlap(units: torch.Tensor, chosen: list[int]) -> dict:
    """``units`` (K, d) unit weights; ``chosen`` indices: their pairwise cosines, each one's
    nearest other unit of all K (index, cosine), and the median nearest-neighbour cosine."""
    u = normalise_rows(units.double())
    cos = (u @ u.T).fill_diagonal_(float("-inf"))
    nearest = cos.max(1)
    return {"pairwise_cosine": [[round(float(c), 4) for c in row]
                                for row in (u[chosen] @ u[chosen].T)],
            "nearest_unit": [int(nearest.indices[k]) for k in chosen],
            "nearest_cosine": [round(float(nearest.values[k]), 4) for k in chosen],
            "median_nearest_cosine_all_units": round(float(nearest.values.median()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a trained run with an evaluation.json")
    p.add_argument("--top", type=int, default=8, help="units of the top stage's ranking [8]")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    evaluation = json.loads(storage.read_text(storage.join(args.run, "evaluation.json")))
    _, stack = load_run(args.run)
    top = stack.stages[-1]
    if not hasattr(top, "unit_weights"):
        raise SystemExit(f"{args.run}: its top stage is {type(top).__name__}, not competitive")
    ranking = evaluation["stages"][-1]["ranking"][:args.top]
    chosen = [int(r["index"]) for r in ranking]
    emit({"what": "cosines between the unit weights of the top stage's best face units",
          "run": args.run, "units": chosen,
          "heldout_balanced_accuracy": [r["heldout_balanced_accuracy"] for r in ranking],
          **overlap(top.unit_weights().detach(), chosen)}, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
