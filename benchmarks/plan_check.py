"""``catneuron plan`` against measured runs: does the sizing model predict the local cluster?

For the config (default: the demo) on the local simulation (2 workers of one core each and one
parameter-server shard: ``plan(nodes=3, cores_per_node=1)``, per-core GFLOP/s measured here
as ``catneuron plan`` measures it), per stage:

- predicted step time, bytes per worker step and memory per shard (:func:`cluster.plan.plan`);
- measured: a worker's step in ``benchmarks/ps.py``'s 2-worker cycles (caches warm: its
  ``worker_ms_per_step``), the bytes the shards counted per worker step and the shard's memory
  (``measured_bytes_per_worker_step``, ``shard_memory_bytes``), and a worker's step in a
  ``catneuron train`` run's ``metrics.jsonl`` (median over the stage's second half, when every
  frame a worker reads is cached);
- the ratio predicted / measured and whether it is within 25 %.

Then the same model, at the same per-core rate, sizes ``configs/le2012.toml`` on 1,000 nodes.

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

TOLERANCE = 0.25


def run_step_s(run: Path, stage: int) -> float | None:
    """Median seconds per worker step over the second half of ``stage`` in a run's metrics."""
    from cluster.runlog import load_metrics

    recs = [r for r in load_metrics(run).records
            if r.get("stage") == stage and "worker" in r and r.get("steps")]
    if not recs:
        return None
    last = max(r["step"] for r in recs)
    late = [r["seconds"] / r["steps"] for r in recs if r["step"] > last / 2]
    return statistics.median(late)


def ps_figures(path: Path) -> dict:
    """A ``benchmarks/ps.py`` result: its stage, a worker's step with 2 workers (seconds), the
    bytes the shards counted per worker step and the largest shard's memory."""
    doc = json.loads(path.read_text())
    return {"stage": doc["stage"], "step_s": sum(doc["worker_ms_per_step"]["ps_2"].values()) / 1e3,
            "bytes_per_step": doc["measured_bytes_per_worker_step"],
            "shard_memory_bytes": max(doc["shard_memory_bytes"]), "source": str(path)}


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
    p.add_argument("--out", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    from cluster.plan import MEASURED_HOW, measure_gflops_per_core, plan
    from cluster.worker import split_holdout
    from jobs.config import load
    from pipeline.reader import FrameReader

    args = build_parser().parse_args(argv)
    config = load(args.config, [f'data.path="{args.data}"'])
    train, _ = split_holdout(args.data, config.data.holdout_frames)
    frames = FrameReader(args.data, batch_size=1, shards=train).num_rows()
    gflops = args.gflops_per_core or measure_gflops_per_core()
    local = plan(config, nodes=3, cores_per_node=1, frames=frames, gflops_per_core=gflops)
    measured = {f["stage"]: f for f in map(ps_figures, args.ps)}
    stages = []
    for sp in local["stages"]:
        s, m = sp["stage"], measured.get(sp["stage"], {})
        stages.append({
            "stage": s,
            "step_s_vs_ps": compare(sp["step_s"], m.get("step_s")),
            "step_s_vs_run": compare(sp["step_s"], run_step_s(args.run, s) if args.run else None),
            "bytes_per_worker_step": compare(sp["bytes_per_step_per_worker"],
                                             m.get("bytes_per_step")),
            "shard_memory_bytes": compare(sp["shard_memory_bytes"], m.get("shard_memory_bytes")),
            "predicted_bound": sp["bound"], "flops_per_step": sp["flops_per_step_per_worker"],
            "read_cache_hit_share": sp["read_cache_hit_share"],
            "first_epoch_s_predicted": sp["first_epoch_s"], "ps_result": m.get("source")})
    le = plan(load("le2012"), nodes=1000, gflops_per_core=gflops)
    result = {
        "benchmark": "plan_check", "config": args.config, "frames": frames,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "layout": "local simulation: plan(nodes=3, cores_per_node=1) = 1 shard, 2 workers of "
                  "one core each",
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
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
