"""Optimal stimuli of a run's top-stage units: each image through its best window alone
against the whole differentiable up-pass, timed in the same run.

``catneuron visualize`` searches each shown unit's optimal stimulus by projected gradient
ascent (:mod:`models.neurons.stimulus`). For a competitive top stage the objective is the
unit's max over every window of every pyramid level; its gradient flows through the best
window alone, so :meth:`models.stages.competitive.CompetitiveStage.own_unit_responses` whitens
that one window with gradients instead of back-propagating the whitening over every window.
This times both objectives on the same units, starts and steps (interleaved, ``--repeat``
times each), and writes how far apart their stimuli and activations end (float rounding)::

    python benchmarks/stimulus.py --run runs/demo/train \\
        --out benchmarks/results/stimulus.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from results_file import cli, emit

from jobs.evaluate import load_run
from models.neurons.stimulus import (
    StimulusConfig,
    optimal_stimuli,
    unit_objective,
    up_pass_objective,
)
from pipeline import storage


def chosen_units(run: str, n_units: int, n_maps: int) -> list[int]:
    """The first ``n_units`` of the top stage's ranking in ``evaluation.json`` (the units
    visualize shows first), or units 0.. without one."""
    path = storage.join(run, "evaluation.json")
    if storage.exists(path):
        ranking = json.loads(storage.read_text(path))["stages"][-1]["ranking"]
        return [int(r["index"]) for r in ranking[:n_units]]
    return list(range(min(n_units, n_maps)))


def search(objective, n_units: int, shape: tuple, config: StimulusConfig, seed: int):
    """(seconds, stimuli, activations) of one search from the same random starts."""
    t0 = time.perf_counter()
    x, a = optimal_stimuli(objective, n_units, shape, config,
                           generator=torch.Generator().manual_seed(seed))
    return time.perf_counter() - t0, x, a


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a trained run whose top stage is competitive")
    p.add_argument("--units", type=int, default=12, help="units searched at once [12: "
                   "visualize's 8 most selective and 4 at random]")
    p.add_argument("--starts", type=int, default=2, help="random starts a unit [2]")
    p.add_argument("--steps", type=int, default=20, help="ascent steps [20]")
    p.add_argument("--repeat", type=int, default=2, help="timed searches of each objective [2]")
    p.add_argument("--threads", type=int, default=2, help="torch threads [2]")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, stack = load_run(args.run)
    stage = stack.n_layers - 1
    if not hasattr(stack.stages[stage], "own_unit_responses"):
        raise SystemExit(f"{args.run}: its top stage is {type(stack.stages[stage]).__name__}, "
                         "not competitive")
    units = chosen_units(args.run, args.units, stack.config.stages[stage].n_maps)
    index = torch.tensor(units)
    shape = (stack.config.channels, stack.config.input_size, stack.config.input_size)
    config = StimulusConfig(args.starts, args.steps)
    contenders = {"whole_up_pass": up_pass_objective(stack, stage, "pooled", index),
                  "best_window": unit_objective(stack, stage, "pooled", index)}
    seconds = {name: [] for name in contenders}
    found = {}
    for _ in range(args.repeat):  # interleaved, so a slow minute of the machine hits both
        for name, objective in contenders.items():
            s, x, a = search(objective, len(units), shape, config, seed=0)
            seconds[name].append(round(s, 3))
            found[name] = (x, a)
    (x0, a0), (x1, a1) = found["whole_up_pass"], found["best_window"]
    median = {name: statistics.median(v) for name, v in seconds.items()}
    emit({"what": "optimal stimulus search of the top stage's units: each image through its "
                  "best window alone against the whole differentiable up-pass",
          "run": args.run, "stage": stage, "units": units, "starts": args.starts,
          "steps": args.steps, "threads": args.threads, "seconds": seconds,
          "median_seconds": median,
          "speedup": round(median["whole_up_pass"] / median["best_window"], 2),
          "max_abs_activation_difference": float((a0 - a1).abs().max()),
          "max_abs_stimulus_difference": float((x0 - x1).abs().max()),
          "activations_best_window": [round(float(v), 4) for v in a1]}, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
