"""Diagnosis: are the face units a split of the probe alternates between copies of one filter?

``catneuron evaluate`` chooses the best top-stage unit on one half of the probe's identities and
measures it on the other half, over random splits; the learner's goal asks that one unit be
chosen in at least half of them. For a trained run and the units the splits chose (from
``benchmarks/face_demo.py``'s ``stability`` shares), this measures on one probe part:

- each unit's AUC, faces against their matched twins (the headline's negatives);
- for each pair: the Pearson correlation of their pooled responses over those images, the
  cosine of their weight rows ``W_k`` (the competitive learner's, in the whitened window
  space), and how many of their 50 most responsive images they share;
- how many units of the top stage reach AUC 0.85 and 0.9.

Correlated responses with near-orthogonal weights mean different filters that fire on the same
faces (another part, size or position of them); a weight cosine near 1 would mean copies.
Labels are read only for the AUCs; run it on the tuning part while choosing a setting::

    python benchmarks/face_unit_pairs.py --run OUT/seed3 --units 110 179 --part tune \\
        --out benchmarks/results/face_unit_pairs/tune_seed3.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
from types import SimpleNamespace

import numpy as np
import torch
from results_file import cli, command_line, emit

from jobs.evaluate import load_probe, load_run
from jobs.report.evaluation import headline
from models.neurons.selectivity import roc_auc
from models.neurons.units import stage_outputs


def responses(stack, probe, positive: str = "faces") -> tuple[torch.Tensor, torch.Tensor]:
    """The top stage's pooled responses (N, K) to the images the headline scores (the
    positive class and its negatives, :func:`jobs.report.evaluation.headline`), and the labels
    (N,) (1: positive)."""
    keep, y, _ = headline(probe, positive)
    x = torch.from_numpy(np.ascontiguousarray(probe.images[keep]))
    with torch.no_grad():
        pooled = stage_outputs(stack, x, stack.n_layers - 1)[-1]
    return pooled.flatten(1), torch.from_numpy(y)


def pair_figures(r: torch.Tensor, weights: torch.Tensor | None, a: int, b: int,
                 top: int = 50) -> dict:
    """Response correlation, weight cosine and top-``top`` overlap of units ``a`` and ``b``."""
    corr = float(torch.corrcoef(torch.stack([r[:, a], r[:, b]]))[0, 1])
    cos = (None if weights is None else
           float(torch.nn.functional.cosine_similarity(weights[a], weights[b], dim=0)))
    shared = (set(torch.topk(r[:, a], top).indices.tolist())
              & set(torch.topk(r[:, b], top).indices.tolist()))
    return {"units": [a, b], "response_corr": round(corr, 3),
            "weight_cos": None if cos is None else round(cos, 3),
            f"top{top}_shared": len(shared)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a catneuron train run (RUN/model.pt)")
    ap.add_argument("--units", type=int, nargs="+", required=True,
                    help="indices of the top stage's pooled units (pairs need two)")
    ap.add_argument("--part", choices=("tune", "report", "all"), default="tune")
    ap.add_argument("--out", help="write the JSON here as well as to stdout")
    args = ap.parse_args(argv)
    cfg, stack = load_run(args.run)
    probe = load_probe(SimpleNamespace(probe=None), cfg).part(args.part)
    r, y = responses(stack, probe)
    if max(args.units) >= r.shape[1] or min(args.units) < 0:
        ap.error(f"--units: the top stage has units 0..{r.shape[1] - 1}")
    learner = getattr(stack.stages[-1], "learner", None)
    weights = getattr(learner, "params", {}).get("W") if learner is not None else None
    aucs = roc_auc(r, y)  # (K,)
    emit({
        "benchmark": "face_unit_pairs",
        "command": command_line(["benchmarks/face_unit_pairs.py", *(argv or sys.argv[1:])]),
        "run": args.run, "part": args.part, "images": int(len(y)), "faces": int(y.sum()),
        "auc": {str(k): round(float(aucs[k]), 4) for k in args.units},
        "units_with_auc_over": {"0.85": int((aucs > 0.85).sum()), "0.9": int((aucs > 0.9).sum())},
        "pairs": [pair_figures(r, weights, a, b)
                  for a, b in itertools.combinations(args.units, 2)],
    }, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
