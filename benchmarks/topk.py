"""Top-k scan speed: Ray actors over a dataset's shards vs one process scanning the same shards.

Contenders, on the units ``catneuron visualize`` scans (every pooled unit of every trained stage
here, an upper bound on its work), same model, same shards, same batch size:

- ``single_1thread``: :func:`cluster.topk.scan_in_process` with one torch/numba thread;
- ``single_all_threads``: the same with torch's and numba's default thread counts;
- ``actors``: :func:`cluster.topk.scan_with_actors`, one single-threaded actor per Ray CPU
  (wall clock includes starting the actors and loading the model in each);
- ``actors_scan_only``: the same actors' scan alone, once started
  (:func:`cluster.topk.start_scanners`, timed apart as ``actors_start``).

Each contender runs ``--cycles`` times, alternating; the figures are frames over total seconds.
The results of all contenders are checked to be identical. The machine's load average is stored
beside the figures (a shared machine slows everything down unevenly).

Usage::

    python benchmarks/topk.py --run /tmp/viz/run --out benchmarks/results/topk.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numba
import torch

from cluster.state_io import read_trained_stack
from cluster.topk import scan_in_process, scan_shards, scan_with_actors, start_scanners
from jobs.visualize import dataset_root
from models.neurons.units import layer_shape
from pipeline.reader import FrameReader, list_shards


def all_units(model: Path) -> dict[int, list[int]]:
    """Every pooled unit of every trained stage."""
    stack, n_trained = read_trained_stack(model)
    units = {}
    for s in range(n_trained):
        C, H, W = layer_shape(stack.config, s, "pooled")
        units[s] = list(range(C * H * W))
    return units


def timed(fn) -> tuple[float, dict]:
    """(seconds, result) of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data")
    p.add_argument("--top-k", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/topk.json")
    args = p.parse_args()
    import ray

    from pipeline.pool import ensure_ray

    run = Path(args.run)
    shards = list_shards(dataset_root(run, args.data))
    n_frames = FrameReader(Path(shards[0]).parent, batch_size=1, shards=shards).num_rows()
    model, units, k, bs = str(run / "model.pt"), all_units(run / "model.pt"), args.top_k, \
        args.batch_size
    ensure_ray()
    n_actors = int(ray.cluster_resources().get("CPU", 1))
    default_threads = (torch.get_num_threads(), numba.get_num_threads())

    def single(n: int):
        numba.set_num_threads(n or default_threads[1])
        return scan_in_process(model, shards, units, k, batch_size=bs,
                               n_threads=n or default_threads[0])

    def started():
        t0 = time.perf_counter()
        actors = start_scanners(model, units, k, n_actors=n_actors, batch_size=bs)
        seconds["actors_start"].append(round(time.perf_counter() - t0, 3))
        return actors

    contenders = {"single_1thread": lambda: single(1),
                  "single_all_threads": lambda: single(0),
                  "actors": lambda: scan_with_actors(model, shards, units, k,
                                                     n_actors=n_actors, batch_size=bs)}
    seconds = {name: [] for name in [*contenders, "actors_scan_only", "actors_start"]}
    results = {}
    for cycle in range(args.cycles):
        names = list(contenders) if cycle % 2 == 0 else list(reversed(contenders))
        for name in names:
            s, results[name] = timed(contenders[name])
            seconds[name].append(round(s, 3))
        actors = started()
        s, results["actors_scan_only"] = timed(lambda a=actors: scan_shards(a, shards, k))
        seconds["actors_scan_only"].append(round(s, 3))
        for a in actors:
            ray.kill(a)
    ref = results["single_1thread"]
    identical = all(torch.equal(r[s].ids, ref[s].ids) for r in results.values() for s in ref)
    fps = {n: round(args.cycles * n_frames / sum(v), 1) for n, v in seconds.items()
           if n != "actors_start"}
    doc = {"command": "python benchmarks/topk.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
           "frames": n_frames, "shards": len(shards), "units": {s: len(u) for s, u in
                                                                 units.items()},
           "top_k": k, "batch_size": bs, "n_actors": n_actors, "cpus": os.cpu_count(),
           "default_threads_torch_numba": default_threads, "seconds": seconds,
           "frames_per_s": fps,
           "actors_vs_single_1thread": round(fps["actors"] / fps["single_1thread"], 3),
           "actors_vs_single_all_threads": round(fps["actors"] / fps["single_all_threads"], 3),
           "actors_scan_only_vs_single_1thread": round(
               fps["actors_scan_only"] / fps["single_1thread"], 3),
           "identical_results": identical, "load_average_1_5_15": os.getloadavg()}
    ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
