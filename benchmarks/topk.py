"""Top-k scan speed: Ray actors over a dataset's shards vs one process scanning the same shards.

Contenders, on every pooled unit of every trained stage (an upper bound on what
``catneuron visualize`` scans), same model, same shards, same batch size, same chunks:

- ``single``: :func:`cluster.topk.scan_in_process` with one torch/numba thread (the reference);
- ``single_2_processes``: the same in 2 processes (no Ray), each scanning half of the shards:
  the machine's own 1 -> 2 ceiling for this scan, measured in the same run;
- ``actors_1``, ``actors_2``: :func:`cluster.topk.scan_with_actors` with ``driver_helps=False``,
  1 or 2 single-threaded actors doing all of the scan; wall clock from the call to its return,
  so it includes starting the actors (a process each, importing torch, loading the model);
- ``auto``: the same with ``driver_helps=True`` and 2 actors, what ``catneuron visualize`` runs:
  the driver scans while the actors start, and the actors take over once up;
- ``actors_1_scan_only``, ``actors_2_scan_only``: the actors' scan alone, once started
  (:func:`cluster.topk.start_scanners`; the start is timed apart as ``start_1``, ``start_2``).

Beside the wall clock, the CPU seconds the scanning processes spent (``single``'s own process,
the actors' scan calls) give frames per CPU second: 2 actors at the same frames per CPU second
as 1 scale as far as the machine lets them (another job on the cores takes the rest).

Each contender runs ``--cycles`` times, their order rotated each cycle; the figures are medians.
Every run of every contender gets a Ray of its own (``single`` too, as ``catneuron visualize``
has Ray up when it scans in process), started before the clock starts (``ray_init``, timed
apart) and left ``--settle`` seconds for its own processes to finish starting, so that their
start-up CPU is charged to no contender.
All contenders' top-k values are checked to be equal (ids too, where no two frames tie). The
machine's load average is stored beside the figures (other jobs on a shared machine slow
contenders unevenly). Ray starts its worker processes, so the actors, at niceness 15 by default
(``RAY_worker_niceness``), where a busy machine's other processes leave them next to no CPU;
the benchmark starts its Rays with niceness 0, that of the one-process reference, so that both
compete for a shared machine's CPUs on the same terms (on an idle machine it makes no
difference).

``--grow N`` scans a dataset N times the run's (the run's frames written again N times with the
pipeline's own shard writer, copy ``r`` shifted by ``r`` pixels and mirrored when ``r`` is odd, so
no two frames are the same), built once under ``--cache``.

``--contenders`` runs a subset (ratios whose contenders are left out are null);
``--chunk-frames`` sets the frames a scanner is handed at a time.

Usage::

    python benchmarks/topk.py --run /tmp/topkdemo/train --out benchmarks/results/topk.json
    python benchmarks/topk.py --run /tmp/topkdemo/train --grow 10 \\
        --out benchmarks/results/topk_30k.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from results_file import cli, emit

from cluster import topk
from cluster.state_io import read_trained_stack
from cluster.topk import scan_in_process, scan_shards, scan_with_actors, start_scanners
from jobs.visualize import dataset_root
from models.neurons.units import layer_shape
from pipeline.reader import FrameReader, list_shards, read_frames
from pipeline.shards import ShardWriter, commit_video, empty_manifest, write_manifest


def all_units(model: Path) -> dict[int, list[int]]:
    """Every pooled unit of every trained stage."""
    stack, n_trained = read_trained_stack(model)
    units = {}
    for s in range(n_trained):
        C, H, W = layer_shape(stack.config, s, "pooled")
        units[s] = list(range(C * H * W))
    return units


def grown(src: Path, out: Path, times: int) -> Path:
    """``out``: ``times`` shifted copies of dataset ``src`` (shards of the same size), made once."""
    if (out / "_manifest.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shards = list_shards(src)
    rows = FrameReader(src, batch_size=1).num_rows() // len(shards)
    manifest = empty_manifest({"grown_from": str(src), "times": times})
    for r in range(times):
        with ShardWriter(out, f"copy{r}", max_rows=rows) as writer:
            for p in shards:
                x = np.roll(read_frames(src, shards=[p]), r, axis=3)  # (N, C, H, W)
                x = x[..., ::-1] if r % 2 else x
                n = len(x)
                writer.write(f"copy{r}", x.transpose(0, 2, 3, 1), np.arange(n), np.zeros(n))
            commit_video(manifest, {"source": f"copy{r}", "status": "ok"}, writer.finalize())
    write_manifest(out, manifest)
    return out


def _import_scanner() -> None:
    """A ceiling process imports the scanner before the clock starts."""
    import cluster.topk  # noqa: F401


def same_top(a: dict, b: dict) -> tuple[bool, bool]:
    """(values equal, ids equal where no tie can swap them) of two scans. A unit's frame at
    rank j is pinned when its value occurs once in the unit's top k and is above the k-th
    value: the k-th may tie with a frame outside the top k (equal frames, or responses that
    round alike), and either frame is then a correct answer."""
    values = all(torch.equal(a[s].values, b[s].values) for s in a)
    ids = True
    for s in a:
        v = a[s].values  # (U, k), each row descending
        once = (v[:, :, None] == v[:, None, :]).sum(2) == 1
        pinned = once & (v > v[:, -1:])
        ids &= torch.equal(a[s].ids[pinned], b[s].ids[pinned])
    return values, ids


def summary(args, root, n_frames: int, n_shards: int, units: dict, seconds: dict, cpu: dict,
            results: dict, load_before) -> dict:
    """The JSON document: medians, frames per second and per CPU-second, the ratios, and whether
    every contender found the same top-k as the single process."""
    k, bs, shards_n = args.top_k, args.batch_size, n_shards
    contenders = [n for n in seconds if n != "ray_init" and not n.startswith("start_")]
    checks = {n: same_top(results["single"], r) for n, r in results.items() if r is not None}
    med = {n: statistics.median(v) for n, v in seconds.items()}
    fps = {n: round(n_frames / med[n], 1) for n in contenders}

    def ratio(a: str, b: str) -> float | None:  # None: a contender left out (--contenders)
        return round(fps[a] / fps[b], 3) if a in fps and b in fps else None

    doc = {"command": "python benchmarks/topk.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
           "dataset": str(root), "frames": n_frames, "shards": shards_n,
           "units": {s: len(u) for s, u in units.items()}, "top_k": k, "batch_size": bs,
           "cpus": os.cpu_count(), "niceness_all": os.nice(0), "seconds": seconds,
           "median_seconds": {n: round(v, 3) for n, v in med.items()},
           "frames_per_s": fps,
           "scanning_cpu_seconds": cpu,
           "frames_per_cpu_s": {n: round(n_frames / statistics.median(v), 1)
                                for n, v in cpu.items() if v},
           "auto_vs_single": ratio("auto", "single"),
           "actors_1_vs_single": ratio("actors_1", "single"),
           "actors_2_vs_single": ratio("actors_2", "single"),
           "actors_2_vs_actors_1": ratio("actors_2", "actors_1"),
           "scan_only_2_vs_1": ratio("actors_2_scan_only", "actors_1_scan_only"),
           "scan_only_1_vs_single": ratio("actors_1_scan_only", "single"),
           "single_2_processes_vs_single": ratio("single_2_processes", "single"),
           "actors_2_vs_1_share_of_2_process_ceiling": round(
               fps["actors_2"] / fps["actors_1"] / (fps["single_2_processes"] / fps["single"]), 3)
           if {"actors_1", "actors_2", "single_2_processes", "single"} <= set(fps) else None,
           "equal_values_vs_single": all(v for v, _ in checks.values()),
           "equal_ids_vs_single_where_pinned": all(i for _, i in checks.values()),
           "load_average_1_5_15_before": load_before,
           "load_average_1_5_15_after": os.getloadavg(),
           "note": "medians of --cycles runs; the machine (2 cores) was shared with other "
                   "users' jobs, see the load averages"}
    return doc


def two_process_pool() -> ProcessPoolExecutor:
    """Two spawned processes, both up with the scanner imported (the 1 -> 2 ceiling's pool)."""
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_import_scanner)
    list(pool.map(abs, [0, 0]))
    return pool


CONTENDERS = ("single", "single_2_processes", "actors_1", "actors_2", "auto",
              "actors_1_scan_only", "actors_2_scan_only")


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data")
    p.add_argument("--grow", type=int, default=1)
    p.add_argument("--cache", default="/tmp/catneuron-bench-topk")
    p.add_argument("--top-k", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--chunk-frames", type=int, default=None,
                   help="frames a scanner is handed at a time [cluster.topk.CHUNK_FRAMES]")
    p.add_argument("--contenders", default=None,
                   help="comma-separated subset of the contenders to run [all]")
    p.add_argument("--out", help="write the JSON here as well as to stdout")
    args = p.parse_args()
    names = args.contenders.split(",") if args.contenders else ["single"]
    if "single" not in names or not set(names) <= set(CONTENDERS):  # ratios are to "single"
        p.error(f"--contenders {args.contenders}: 'single' and any of {','.join(CONTENDERS)}")
    return args


def main() -> None:
    args = parse_args()
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet each ensure_ray starts
    import ray

    from pipeline.pool import ensure_ray

    run = Path(args.run)
    root = dataset_root(run, args.data)
    if args.grow > 1:
        root = grown(root, Path(args.cache) / f"x{args.grow}", args.grow)
    shards = list_shards(root)
    n_frames = FrameReader(root, batch_size=1, shards=shards).num_rows()
    model, units, k, bs = str(run / "model.pt"), all_units(run / "model.pt"), args.top_k, \
        args.batch_size
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {"single": [], "actors_1_scan_only": [],
                                    "actors_2_scan_only": []}
    results = {}

    def timed(name: str, fn):
        if ray.is_initialized():
            ray.shutdown()
        t0 = time.perf_counter()
        ensure_ray()
        seconds.setdefault("ray_init", []).append(round(time.perf_counter() - t0, 3))
        time.sleep(args.settle)  # Ray's own processes finish starting before the clock starts
        t0 = time.perf_counter()
        results[name] = fn()
        seconds.setdefault(name, []).append(round(time.perf_counter() - t0, 3))

    def scan_only(n: int):
        t0 = time.perf_counter()
        actors = start_scanners(model, units, k, n_actors=n, batch_size=bs)
        seconds.setdefault(f"start_{n}", []).append(round(time.perf_counter() - t0, 3))
        try:
            out = scan_shards(actors, shards, k)
            cpu[f"actors_{n}_scan_only"].append(
                round(sum(ray.get([a.cpu_seconds.remote() for a in actors])), 3))
            return out
        finally:
            for a in actors:
                ray.kill(a)

    def single():
        c0 = time.process_time()
        out = scan_in_process(model, shards, units, k, batch_size=bs, n_threads=1)
        cpu["single"].append(round(time.process_time() - c0, 3))
        return out

    pool = two_process_pool()

    def two_processes():  # the machine's own 1 -> 2 ceiling for this scan, without Ray
        list(pool.map(partial(scan_in_process, model, units=units, k=k, batch_size=bs,
                              n_threads=1), [shards[0::2], shards[1::2]]))

    contenders = {
        "single": single,
        "single_2_processes": two_processes,
        "actors_1": lambda: scan_with_actors(model, shards, units, k, n_actors=1,
                                             batch_size=bs, driver_helps=False),
        "actors_2": lambda: scan_with_actors(model, shards, units, k, n_actors=2,
                                             batch_size=bs, driver_helps=False),
        "auto": lambda: scan_with_actors(model, shards, units, k, n_actors=2, batch_size=bs),
        "actors_1_scan_only": lambda: scan_only(1),
        "actors_2_scan_only": lambda: scan_only(2),
    }
    assert set(contenders) == set(CONTENDERS)
    names = args.contenders.split(",") if args.contenders else list(contenders)
    if args.chunk_frames:
        topk.CHUNK_FRAMES = args.chunk_frames  # the default of every chunks() call
    for cycle in range(args.cycles):
        for name in names[cycle % len(names):] + names[: cycle % len(names)]:
            timed(name, contenders[name])
    if ray.is_initialized():
        ray.shutdown()
    pool.shutdown()
    emit(summary(args, root, n_frames, len(shards), units, seconds, cpu, results, load_before),
         args.out)


if __name__ == "__main__":
    sys.exit(cli(main))
