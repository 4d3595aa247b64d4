"""Exploration: would pooling over groups of top-stage units beat the best single unit?

In the shipped demo stack the face frames drive several top-stage units, each through a partly
different set of appearances, with centroids far apart (cosine below 0.35). A unit that pools
over a group of units that fire together would see faces wherever any member does. This script
measures that on a trained run *without labels to form the groups*:

- each top-stage pooled unit's top 100 corpus frames come from ``RUN/corpus_tops.json``;
- unit ``u``'s group is ``u`` and every unit whose top-100 set shares at least ``tau`` of it
  (Jaccard index of the frame sets, ``--tau``; an unsupervised co-activation rule);
- a group unit's response to an image pools its members' responses, each divided by that
  member's standard deviation over the probe's images (no labels used): their mean, their
  maximum or their root mean square (``--pool``; Le et al. pool features by L2);
- single units and group units are scored like ``catneuron evaluate``'s headline (held out:
  unit chosen on one half of the probe's identities, measured on the other, 20 splits), on the
  probe part ``--part`` (``tune`` while exploring).

A group rule is a new architecture: before it could be reported against the baselines, the
same rule must be applied to the random-weight and exemplar stacks. This script does not do
that; it says only whether the direction is worth building. Usage::

    python benchmarks/unit_groups.py --runs RUN [RUN ...] --part tune --tau 0.1 0.2 0.3 \\
        --pool mean --out benchmarks/results/unit_groups_tune_mean.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from results_file import cli, command_line, emit

from cluster.topk import shard_row_counts
from jobs.evaluate import load_probe, load_run
from jobs.report import corpus_tops
from jobs.report.evaluation import headline, score_sets, unit_tables
from models.neurons.selectivity import stratified_halves
from pipeline.reader import list_shards

PROTOCOL = {"n_splits": 20, "n_thresholds": 20, "seed": 0}  # catneuron evaluate's defaults


def top_sets(run: Path, data: str, stage: int) -> list[set[int]]:
    """Each pooled unit of ``stage``: its top 100 corpus frame ids, from ``RUN/corpus_tops.json``
    read as visualize reads it (:func:`jobs.report.corpus_tops.read`: refused when stale)."""
    shards = list_shards(data)
    top = corpus_tops.read(run, shards, shard_row_counts(shards), 100).get((stage, "pooled"))
    if top is None:
        raise SystemExit(f"{run}: no current corpus_tops.json of stage {stage}'s pooled units")
    return [set(ids) for ids in top.ids[:, :100].tolist()]


def groups(sets: list[set[int]], tau: float) -> list[list[int]]:
    """Unit u's group: u and every unit whose top set's Jaccard index with u's is >= tau."""
    return [[v for v, b in enumerate(sets) if v == u or len(a & b) / len(a | b) >= tau]
            for u, a in enumerate(sets)]


def score(values: np.ndarray, y: np.ndarray, splits) -> dict:
    """Held-out balanced accuracy, AUC and polarity of the best of ``values``' columns."""
    s = score_sets({"units": values}, y, PROTOCOL, splits)["units"]
    return {k: s[k] for k in ("index", "polarity", "heldout_balanced_accuracy", "heldout_auc")}


POOLS = {"mean": lambda z: z.mean(1), "max": lambda z: z.max(1),
         "l2": lambda z: np.sqrt((z ** 2).mean(1))}


def measure(run: Path, part: str, taus: list[float], pool: str, singles: bool) -> dict:
    """Single units against group units of ``run`` for each tau."""
    cfg, stack = load_run(str(run))
    probe = load_probe(argparse.Namespace(probe=None), cfg).part(part)
    keep, y, _ = headline(probe, "faces")
    top = stack.n_layers - 1
    r = unit_tables(stack, probe.images, stages=(top,))[f"{top}/pooled"][keep]
    groups_of_images = None if probe.groups is None else probe.groups[keep]
    splits = stratified_halves(y, PROTOCOL["n_splits"], PROTOCOL["seed"], groups_of_images)
    z = r / r.std(0, keepdims=True).clip(1e-12)
    sets = top_sets(run, cfg.data.path, top)
    out = {"run": str(run), "part": part, "pool": pool, "with_singles": singles,
           "single": score(r, y, splits),
           "groups": {}}
    for tau in taus:
        g = groups(sets, tau)
        pooled = np.stack([POOLS[pool](z[:, members]) for members in g], 1)
        if singles:  # candidates: the units themselves, then the groups
            pooled, g = np.concatenate([r, pooled], 1), [[u] for u in range(len(g))] + g
        best = score(pooled, y, splits)
        best["members"] = g[best["index"]]
        best["mean_group_size"] = round(float(np.mean([len(m) for m in g])), 2)
        out["groups"][str(tau)] = best
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--part", choices=("tune", "report"), default="tune")
    ap.add_argument("--tau", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--pool", choices=sorted(POOLS), default="mean")
    ap.add_argument("--with-singles", action="store_true",
                    help="score the single units and the groups as one candidate set")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    doc = {"benchmark": "unit_groups", "command": command_line(),
           "runs": [measure(run, args.part, args.tau, args.pool, args.with_singles)
                    for run in args.runs]}
    emit(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
