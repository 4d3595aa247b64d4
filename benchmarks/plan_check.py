"""``catneuron plan`` against measured runs: does the sizing model predict the local cluster?

For the config (default: the demo) on the local simulation, the plan is given what is measured
on this machine, apart from the parameter-server runs it is compared with:

- each stage's step on one core, input included: by default the reference loops of the
  ``benchmarks/ps.py`` result, which ran in the same interleaved cycles as its parameter-server
  contenders (this machine's speed drifts by tens of percent within minutes): the single
  process's step for one worker, and each process's step while two run at once (``single_x2``,
  two processes sharing the caches and memory of two cores) for two workers. ``--steps-from
  here`` times it here instead (:func:`cluster.plan_rates.measure_stage_steps`, as ``catneuron
  plan --measure-steps``); both are recorded;
- a worker's time per call to a shard: Ray actor calls on this machine carrying the stage's
  push and parameters (:func:`call_s`), as ``--call-ms``;
- a synchronous step's time per worker beyond the first (:func:`measure_fanout_s`: the
  driver's own step window over 1, 2 and 3 stand-in workers that do no work), as
  ``--fanout-ms``;
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
(its stack is too large to time here: FLOPs over the rate, and the measured call cost), as
configured (async) and in sync mode, where the measured fan-out is paid once a step for every
worker beyond the first (743 times: 744 workers beside 256 shards).

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
import time
from pathlib import Path

import numpy as np
import ray
from results_file import cli, emit

TOLERANCE = 0.25
FANOUT_WORKERS = (1, 2, 3)


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


#: The schedule a ps.py result records (its ``mode`` absent: async, the only one then).
SETTING_KEYS = ("mode", "n_push", "n_fetch", "push", "transfer_dtype", "n_ps_shards")


def setting_differences(config, ps: dict) -> list[str]:
    """``KEY measured != config's`` for each setting where a ps.py result (:func:`ps_figures`)
    differs from what the config's stage runs: the plan sizes the config's schedule, so a run
    at another one is no check of it."""
    from cluster.plan import wire_schedule

    train = wire_schedule(config.train.for_stage(ps["stage"]))
    return [f"{k} {v} != {getattr(train, k)}" for k, v in ps["setting"].items()
            if v is not None and v != getattr(train, k)]


def ps_figures(path: Path) -> dict:
    """A ``benchmarks/ps.py`` result: its stage, a worker's step with 1 and with 2 workers
    (seconds), the bytes the shards counted per worker step, the largest shard's memory, and
    its reference loops' steps in the same cycles: the single process's (``single_step_s``)
    and each process's when two run at once (``loaded_step_s``, its ``single_x2``)."""
    doc = json.loads(path.read_text())
    steps = {n: sum(doc["worker_ms_per_step"][f"ps_{n}"].values()) / 1e3 for n in (1, 2)}
    rows, rate = doc.get("rows_per_step"), doc.get("frames_per_s", {})
    loops = ({"single_step_s": rows / rate["single"], "loaded_step_s": 2 * rows / rate["single_x2"]}
             if rows and {"single", "single_x2"} <= rate.keys() else {})
    setting = {k: doc.get(k) for k in SETTING_KEYS} | {"mode": doc.get("mode", "async")}
    return {"stage": doc["stage"], "step_s": steps, **loops, "setting": setting,
            "bytes_per_step": doc["measured_bytes_per_worker_step"],
            "shard_memory_bytes": max(doc["shard_memory_bytes"]), "source": str(path)}


class NoWorkWorker:
    """A stand-in worker for :func:`measure_fanout_s`: no compute, an update of the stage's
    size (the :meth:`cluster.worker.Worker.compute` signature with one shard)."""

    def __init__(self, n: int) -> None:
        self.update = np.zeros(n, np.float32)

    def compute(self, step: int, params: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.update, {"step": step}

    def receive(self, params: np.ndarray) -> dict:
        return {"ok": True}


class NoWorkShard:
    """A stand-in shard: takes every update (Ray reads each argument), answers with parameters
    of the same size."""

    def __init__(self, n: int) -> None:
        self.params = np.zeros(n, np.float32)

    def apply_sync(self, step: int, *updates: np.ndarray) -> np.ndarray:
        return self.params + 0.0 * updates[0]

    def params_now(self) -> np.ndarray:
        return self.params

    def call(self, x: np.ndarray) -> np.ndarray:
        return x


def call_s(shard, payload: np.ndarray, calls: int = 300) -> float:
    """Seconds per call of a Ray actor method that takes ``payload`` and answers as many
    bytes (a worker's push and the parameters it fetches back); the mean over ``calls``
    calls after 30 unmeasured ones."""
    for _ in range(30):
        ray.get(shard.call.remote(payload))
    t0 = time.perf_counter()
    for _ in range(calls):
        ray.get(shard.call.remote(payload))
    return (time.perf_counter() - t0) / calls


def sync_round_s(n_workers: int, n: int, in_flight: int, steps: int = 200) -> float:
    """Seconds per synchronous step of ``n_workers`` stand-ins that do no work and one shard,
    sent by the driver's own :class:`cluster.drivers.sync.StepWindow` with ``in_flight`` steps
    outstanding (the config's ``max_in_flight``; ``compiled_graph.tasks_contender``), after 20
    untimed ones: the calls and the fan-out alone."""
    from compiled_graph import tasks_contender

    workers = [ray.remote(num_cpus=0)(NoWorkWorker).remote(n) for _ in range(n_workers)]
    shard = ray.remote(num_cpus=0)(NoWorkShard).remote(n)
    try:
        tasks_contender(workers, shard, 20, in_flight)
        return tasks_contender(workers, shard, steps, in_flight)
    finally:
        for actor in (*workers, shard):
            ray.kill(actor)


def measure_fanout_s(n: int, in_flight: int, cycles: int = 4) -> dict:
    """A synchronous step's time per worker beyond the first (``catneuron plan --fanout-ms``):
    the least-squares slope of :func:`sync_round_s` over 1, 2 and 3 workers (medians of
    ``cycles`` cycles, the worker counts in reverse order every other cycle); 0 if noise makes
    it negative."""
    rounds: dict[int, list[float]] = {w: [] for w in FANOUT_WORKERS}
    for cycle in range(cycles):
        for w in FANOUT_WORKERS[::-1 if cycle % 2 else 1]:
            rounds[w].append(sync_round_s(w, n, in_flight))
    med = {w: statistics.median(v) for w, v in rounds.items()}
    slope = max(0.0, float(np.polyfit(list(med), list(med.values()), 1)[0]))
    return {"round_s": med, "fanout_s": slope}


def measure_calls(payloads: dict[int, int], in_flight: int) -> dict[int, dict]:
    """Per stage, on a local Ray bound to 127.0.0.1 started here: ``call_s`` (:func:`call_s`
    with the stage's ``payloads`` bytes) and the sync fan-out (:func:`measure_fanout_s`)."""
    from pipeline.pool import start_local_ray

    start_local_ray(os.cpu_count())  # a fresh local Ray on 127.0.0.1, as the trainer's own
    try:
        time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
        out = {}
        for stage, nbytes in payloads.items():
            n = max(int(nbytes) // 4, 1)  # float32 values
            shard = ray.remote(num_cpus=0)(NoWorkShard).remote(n)
            out[stage] = {"call_s": call_s(shard, np.zeros(4 * n, np.uint8)),
                          **measure_fanout_s(n, in_flight)}
            ray.kill(shard)
        return out
    finally:
        ray.shutdown()


def compare(predicted: float, measured: float | None) -> dict:
    """Predicted against measured: the ratio and whether it is within :data:`TOLERANCE`."""
    if not measured:
        return {"predicted": predicted, "measured": None, "ratio": None, "within_25pct": None}
    ratio = predicted / measured
    return {"predicted": predicted, "measured": measured, "ratio": ratio,
            "within_25pct": abs(ratio - 1) <= TOLERANCE}


STEPS_FROM = {
    "ps": "ps.py's reference loops, timed in its own cycles: the single process's step for one "
          "worker, each process's step with two running at once (single_x2) for two workers",
    "here": "timed here on one core (cluster.plan_rates.measure_stage_steps), for both",
}


def stage_steps(source: str, here: float, ps: dict) -> dict[int, float]:
    """The one-core step the plan is given for 1 and for 2 workers (:data:`STEPS_FROM`): the
    machine's speed drifts by tens of percent within minutes, and ps.py's reference loops run
    in the same cycles as the runs they are compared with. ``here`` when ps.py has none."""
    if source == "ps" and "single_step_s" in ps:
        return {1: ps["single_step_s"], 2: ps["loaded_step_s"]}
    return {1: here, 2: here}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--data", required=True, help="the dataset the measurements trained on")
    p.add_argument("--ps", nargs="+", type=Path, required=True,
                   help="benchmarks/ps.py results, one per stage")
    p.add_argument("--run", type=Path, help="a 'catneuron train' run of the config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, e.g. train.mode=\"async\" for ps.py results of "
                        "the async setting")
    p.add_argument("--gflops-per-core", type=float,
                   help="skip the measurement (default: measured as 'catneuron plan' does)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per stage on one core")
    p.add_argument("--steps-from", choices=sorted(STEPS_FROM), default="ps",
                   help="the one-core step the plan is given (default: ps.py's reference loops, "
                        "timed in the same cycles as the runs compared)")
    p.add_argument("--out", type=Path)
    return p


def check_settings(config, measured: dict) -> None:
    """UserError unless each ``ps.py`` result in ``measured`` ({stage: figures}) ran the
    config's setting of its stage (:func:`setting_differences`)."""
    from jobs.errors import UserError

    for f in measured.values():
        if differs := setting_differences(config, f):
            raise UserError(f"{f['source']} ran another setting than the config's stage "
                            f"{f['stage']} ({', '.join(differs)}): give the config's with "
                            f"--set train.KEY=VALUE, or a ps.py result of its setting")


def le2012_sizing(gflops: float, call: float, fanout: float) -> dict:
    """The same plan model sizing ``configs/le2012.toml`` on 1,000 nodes, async and sync, with
    this machine's measured rate, call time and (sync) fan-out."""
    from cluster.plan import plan
    from jobs.config import load

    le = plan(load("le2012"), nodes=1000, gflops_per_core=gflops, call_s=call)
    le_sync = plan(load("le2012", ['train.mode="sync"']), nodes=1000, gflops_per_core=gflops,
                   call_s=call, fanout_s=fanout)
    return {
        "le2012_on_1000_nodes": {
            k: le[k] for k in ("n_workers", "n_ps_shards", "total_params", "epoch_s_all_stages")}
        | {"stages": [{k: s[k] for k in ("stage", "n_params", "shard_memory_bytes",
                                         "replica_memory_bytes", "flops_per_step_per_worker",
                                         "bytes_per_step_per_worker", "step_s", "bound",
                                         "epoch_s")} for s in le["stages"]]},
        "le2012_on_1000_nodes_sync": {
            "fanout_s": fanout,
            "stages": [{k: s[k] for k in ("stage", "step_s", "sync_fanout_s_per_step", "bound",
                                          "epoch_s")} for s in le_sync["stages"]]},
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from cluster.plan import plan
    from cluster.plan_rates import MEASURED_HOW, measure_gflops_per_core, measure_stage_steps
    from cluster.worker import split_holdout
    from jobs.config import load
    from pipeline.pool import local_ray_settings
    from pipeline.reader import FrameReader

    args = build_parser().parse_args(argv)
    config = load(args.config, [f'data.path="{args.data}"', *args.set])
    measured = {f["stage"]: f for f in map(ps_figures, args.ps)}
    check_settings(config, measured)
    train, _ = split_holdout(args.data, config.data.holdout_frames)
    frames = FrameReader(args.data, batch_size=1, shards=train).num_rows()
    gflops = args.gflops_per_core or measure_gflops_per_core()
    here = measure_stage_steps(config, steps=args.steps)
    rate_only = plan(config, nodes=3, cores_per_node=1, frames=frames, gflops_per_core=gflops)
    calls = measure_calls({sp["stage"]: sp["bytes_per_step_per_worker"] / 2
                           for sp in rate_only["stages"]}, config.train.max_in_flight)
    stages = []
    for s, sp_rate in enumerate(rate_only["stages"]):
        m = measured.get(s, {})
        step_in = stage_steps(args.steps_from, here[s], m)
        on = {n: plan(config, nodes=n + 1, cores_per_node=1, frames=frames,
                      gflops_per_core=gflops, call_s=calls[s]["call_s"],
                      fanout_s=calls[s]["fanout_s"],
                      stage_steps_s={**here, s: step_in[n]})["stages"][s]
              for n in (1, 2)}
        ps_step = m.get("step_s", {})
        stages.append({
            "stage": s,
            "measured_step_one_core_s": here[s],
            "step_s_given_to_plan": step_in, **calls[s],
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
    call, fanout = (max(c[k] for c in calls.values()) for k in ("call_s", "fanout_s"))
    result = {
        "benchmark": "plan_check", "config": args.config, "overrides": args.set,
        "frames": frames,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
        "ray_settings": local_ray_settings(),
        "layout": "plan(nodes=2, cores_per_node=1) = 1 shard and 1 worker (ps.py's 1-worker "
                  "cycles); nodes=3 = 1 shard and 2 workers (its 2-worker cycles and the train "
                  "run), here sharing 2 cores",
        "step_model": "a worker's step on one core (input included) + shard calls x measured "
                      "call time + (sync) workers beyond the first x measured fan-out",
        "steps_from": STEPS_FROM[args.steps_from],
        "gflops_per_core": gflops,
        "gflops_per_core_source": "given" if args.gflops_per_core else MEASURED_HOW,
        "tolerance": TOLERANCE, "stages": stages,
        **le2012_sizing(gflops, call, fanout),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
