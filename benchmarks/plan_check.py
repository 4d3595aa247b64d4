"""``catneuron plan`` against measured runs: does the sizing model predict the local cluster?

For the config (default: the demo) on the local simulation, the plan is given what it measures
on one machine, each measured here and independently of the runs it is compared with:

- each stage's step on one core, input included (:func:`cluster.plan_rates.
  measure_stage_steps`, as ``catneuron plan --measure-steps``);
- a worker's time per call to a shard: Ray actor calls on this machine carrying the stage's
  push and parameters (:func:`measure_call_s`), as ``--call-ms``;
- the per-core GFLOP/s (``catneuron plan``'s own measurement), for the FLOPs-only prediction
  kept beside it.

Compared per stage:

- ``benchmarks/ps.py``'s 1-worker cycles (one worker and one shard, each with a core of the
  two: ``plan(nodes=2, cores_per_node=1)``) and its 2-worker cycles (``nodes=3``: two workers
  and a shard, which here share 2 cores) against a worker's step (``worker_ms_per_step``),
  the bytes the shards counted per worker step and the shard's memory;
- a ``catneuron train`` run's worker step (``metrics.jsonl``, median over the stage's second
  half, when every frame a worker reads is cached), against ``nodes=3``;
- the ratio predicted / measured and whether it is within 25 %.

Then the same model, at the same per-core rate, sizes ``configs/le2012.toml`` on 1,000 nodes
(its stack is too large to time here: FLOPs over the rate, and the measured call cost).

Usage::

    python benchmarks/ps.py --data D --stage 0 --out ps0.json
    python benchmarks/ps.py --data D --stage 1 --run RUN --out ps1.json
    python benchmarks/plan_check.py --data D --ps ps0.json ps1.json --run RUN \\
        --out benchmarks/results/plan_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from results_file import emit

TOLERANCE = 0.25


def run_step_s(run: Path, stage: int) -> float | None:
    """Median seconds per worker step over the second half of ``stage`` in a run's metrics:
    an async worker's chunks (their ``seconds`` over ``steps``), or in a sync run the time
    between the stage's consecutive records over the steps between them (every worker takes
    each step)."""
    from cluster.runlog import load_metrics

    records = [r for r in load_metrics(run).records if r.get("stage") == stage]
    chunks = [r for r in records if "worker" in r and r.get("steps")]
    if chunks:
        last = max(r["step"] for r in chunks)
        return statistics.median(r["seconds"] / r["steps"] for r in chunks
                                 if r["step"] > last / 2)
    steps = sorted((r["step"], r["time"]) for r in records
                   if "worker" not in r and "updates_applied" in r and "time" in r)
    if len(steps) < 3:
        return None
    last = steps[-1][0]
    late = [(t1 - t0) / (s1 - s0)
            for (s0, t0), (s1, t1) in zip(steps[:-1], steps[1:], strict=True)
            if s0 > last / 2 and s1 > s0]
    return statistics.median(late) if late else None


def ps_figures(path: Path) -> dict:
    """A ``benchmarks/ps.py`` result: its stage, a worker's step with 1 and with 2 workers
    (seconds), the bytes the shards counted per worker step and the largest shard's memory."""
    doc = json.loads(path.read_text())
    steps = {n: sum(doc["worker_ms_per_step"][f"ps_{n}"].values()) / 1e3 for n in (1, 2)}
    return {"stage": doc["stage"], "step_s": steps,
            "bytes_per_step": doc["measured_bytes_per_worker_step"],
            "shard_memory_bytes": max(doc["shard_memory_bytes"]), "source": str(path)}


def measure_call_s(payload_bytes: int, calls: int = 300) -> float:
    """Seconds per call of a Ray actor method that takes ``payload_bytes`` and answers as many
    (a worker's push and the parameters it fetches back), on a local Ray cluster bound to
    127.0.0.1 started here; the mean over ``calls`` calls after 30 unmeasured ones."""
    import time

    import numpy as np
    import ray

    from pipeline.pool import start_local_ray

    @ray.remote(num_cpus=0)
    class Shard:
        def call(self, x):
            return x

    start_local_ray(os.cpu_count())  # a fresh local Ray on 127.0.0.1, as the trainer's own
    try:
        time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
        shard, x = Shard.remote(), np.zeros(max(int(payload_bytes), 1), np.uint8)
        for _ in range(30):
            ray.get(shard.call.remote(x))
        t0 = time.perf_counter()
        for _ in range(calls):
            ray.get(shard.call.remote(x))
        return (time.perf_counter() - t0) / calls
    finally:
        ray.shutdown()


def compare(predicted: float, measured: float | None) -> dict:
    """Predicted against measured: the ratio and whether it is within :data:`TOLERANCE`."""
    if not measured:
        return {"predicted": predicted, "measured": None, "ratio": None, "within_25pct": None}
    ratio = predicted / measured
    return {"predicted": predicted, "measured": measured, "ratio": ratio,
            "within_25pct": abs(ratio - 1) <= TOLERANCE}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--data", required=True, help="the dataset the measurements trained on")
    p.add_argument("--ps", nargs="+", type=Path, required=True,
                   help="benchmarks/ps.py results, one per stage")
    p.add_argument("--run", type=Path, help="a 'catneuron train' run of the config")
    p.add_argument("--gflops-per-core", type=float,
                   help="skip the measurement (default: measured as 'catneuron plan' does)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per stage on one core")
    p.add_argument("--out", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    from cluster.plan import plan
    from cluster.plan_rates import MEASURED_HOW, measure_gflops_per_core, measure_stage_steps
    from cluster.worker import split_holdout
    from jobs.config import load
    from pipeline.pool import local_ray_settings
    from pipeline.reader import FrameReader

    args = build_parser().parse_args(argv)
    config = load(args.config, [f'data.path="{args.data}"'])
    train, _ = split_holdout(args.data, config.data.holdout_frames)
    frames = FrameReader(args.data, batch_size=1, shards=train).num_rows()
    gflops = args.gflops_per_core or measure_gflops_per_core()
    steps = measure_stage_steps(config, steps=args.steps)
    rate_only = plan(config, nodes=3, cores_per_node=1, frames=frames, gflops_per_core=gflops)
    calls = {sp["stage"]: measure_call_s(sp["bytes_per_step_per_worker"] / 2)
             for sp in rate_only["stages"]}
    measured = {f["stage"]: f for f in map(ps_figures, args.ps)}
    stages = []
    for s, sp_rate in enumerate(rate_only["stages"]):
        m = measured.get(s, {})
        on = {n: plan(config, nodes=n + 1, cores_per_node=1, frames=frames,
                      gflops_per_core=gflops, call_s=calls[s], stage_steps_s=steps)["stages"][s]
              for n in (1, 2)}
        ps_step = m.get("step_s", {})
        stages.append({
            "stage": s,
            "measured_step_one_core_s": steps[s], "call_s": calls[s],
            "step_s_vs_ps_1_worker": compare(on[1]["step_s"], ps_step.get(1)),
            "step_s_vs_ps_2_workers": compare(on[2]["step_s"], ps_step.get(2)),
            "step_s_vs_run": compare(on[2]["step_s"],
                                     run_step_s(args.run, s) if args.run else None),
            "flops_only_step_s_vs_ps_1_worker": compare(sp_rate["compute_s_per_step"],
                                                        ps_step.get(1)),
            "bytes_per_worker_step": compare(on[2]["bytes_per_step_per_worker"],
                                             m.get("bytes_per_step")),
            "shard_memory_bytes": compare(on[2]["shard_memory_bytes"],
                                          m.get("shard_memory_bytes")),
            "predicted_bound": on[2]["bound"],
            "flops_per_step": sp_rate["flops_per_step_per_worker"],
            "read_cache_hit_share": on[2]["read_cache_hit_share"],
            "first_epoch_s_predicted": on[2]["first_epoch_s"], "ps_result": m.get("source")})
    le = plan(load("le2012"), nodes=1000, gflops_per_core=gflops, call_s=max(calls.values()))
    result = {
        "benchmark": "plan_check", "config": args.config, "frames": frames,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "ray_settings": local_ray_settings(),
        "layout": "plan(nodes=2, cores_per_node=1) = 1 shard and 1 worker (ps.py's 1-worker "
                  "cycles); nodes=3 = 1 shard and 2 workers (its 2-worker cycles and the train "
                  "run), here sharing 2 cores",
        "step_model": "measured step on one core (input included) + shard calls x measured "
                      "call time",
        "gflops_per_core": gflops,
        "gflops_per_core_source": "given" if args.gflops_per_core else MEASURED_HOW,
        "tolerance": TOLERANCE, "stages": stages,
        "le2012_on_1000_nodes": {
            k: le[k] for k in ("n_workers", "n_ps_shards", "total_params", "epoch_s_all_stages")}
        | {"stages": [{k: s[k] for k in ("stage", "n_params", "shard_memory_bytes",
                                         "replica_memory_bytes", "flops_per_step_per_worker",
                                         "bytes_per_step_per_worker", "step_s", "bound",
                                         "epoch_s")} for s in le["stages"]]},
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
