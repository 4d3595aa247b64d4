"""Does a Ray Compiled Graph carry the synchronous step faster than Ray tasks? Measured with
stand-in actors, so the transport alone is timed (``benchmarks/ps.py --sync-transport`` times
the trainer's own workers both ways).

A synchronous step (:mod:`cluster.drivers.sync`) is two Ray task calls in a row: every worker's
``compute(step, *params)``, then each shard's ``apply_sync(step, *updates)``, whose reply is the
next step's parameters; at the demo's stage 0 the calls take longer than the work. A compiled graph
(``ray.dag``, ``experimental_compile``) replaces the calls by shared-memory channels between the
same actors. Its graph runs once per step and cannot feed an output into its next run, so a worker
keeps the parameters the shard sends it (``receive``) and computes against them at the next run:
``compute_held(step) -> apply_sync(step, *updates) -> receive(params)``
(:mod:`cluster.drivers.compiled`, ``train.sync_transport = "compiled"``).

Both contenders use the same stand-in actors: a worker does a fixed amount of CPU work (a Python
loop of as many iterations as take ``--compute-ms`` on an idle core here, so it slows down when its
core is shared, as a real step does) and sends an update of ``--payload-bytes``; the shard adds the
mean update to its parameters and returns them (``--payload-bytes`` back). The defaults are the
demo's stage 1 (``benchmarks/plan_check.py``'s one-core step and ``benchmarks/ps.py``'s bytes);
``--stage 0`` takes stage 0's. The tasks contender runs the driver's own
:class:`cluster.drivers.sync.StepWindow` with ``max_in_flight`` = 2 steps outstanding, as the demo
config does; the compiled one keeps 2 runs outstanding too. ``--cycles`` cycles time each contender
with 1 and 2 workers, in reverse order every other cycle. The reference is the compute itself,
timed alone in the same run: a step can take no less, so the overhead is ``step / compute - 1``.
The script also measures how much CPU a compiled graph's actors burn while they wait between runs
(``idle_cpu_share``: CPU seconds per second of wall time, each actor), since on 2 cores a waiting
actor that spins takes a working one's core; and how much CPU work other processes get done beside
an idle compiled graph, as a share of what they get done beside the same actors idle under Ray
tasks (``other_work_beside_idle_compiled_graph``: one counting process per core, 2 s each).

Usage::

    python benchmarks/compiled_graph.py --out benchmarks/results/compiled_graph.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import cli, emit  # noqa: E402

# The demo's stages: a worker's step on one core, input included (plan_check_sync_inline_
# 20261206.json's measured_step_one_core_s), and the float32 bytes each way (ps.py's
# bytes_per_update / 2).
STAGES = {0: {"compute_ms": 1.32, "payload_bytes": 6272},
          1: {"compute_ms": 13.2, "payload_bytes": 198400}}


def busy(iterations: int) -> None:
    """A fixed amount of CPU work on one core (the stand-in for a worker's CD step): it takes
    longer when the core is shared, as a real step does."""
    for _ in range(iterations):
        pass


def iterations_for(seconds: float) -> tuple[int, float]:
    """The :func:`busy` iterations that take ``seconds`` on an idle core here, and the time
    they took when timed again (the compute reference)."""
    n = 100_000
    t0 = time.perf_counter()
    busy(n)
    n = int(n * seconds / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for _ in range(20):
        busy(n)
    return n, (time.perf_counter() - t0) / 20


class StandInWorker:
    """A worker that computes for a fixed time and sends a fixed-size update."""

    def __init__(self, iterations: int, n: int) -> None:
        self.iterations, self.params = iterations, np.zeros(n, np.float32)

    def compute(self, step: int, params: np.ndarray) -> tuple[np.ndarray, dict]:
        """The task path's call: :meth:`cluster.worker.Worker.compute`'s signature (one shard)."""
        self.params = params
        return self.compute_held(step), {"step": step}

    def compute_held(self, step: int) -> np.ndarray:
        busy(self.iterations)
        return self.params + 1.0

    def receive(self, params: np.ndarray) -> dict:
        self.params = params
        return {"ok": True}

    def pid(self) -> int:
        return os.getpid()


class StandInShard:
    """A shard that applies the mean of the updates and returns its parameters."""

    def __init__(self, n: int) -> None:
        self.params = np.zeros(n, np.float32)

    def apply_sync(self, step: int, *updates: np.ndarray) -> np.ndarray:
        self.params = self.params + 0.01 * (sum(updates) / len(updates))
        return self.params

    def params_now(self) -> np.ndarray:
        return self.params

    def pid(self) -> int:
        return os.getpid()


def tasks_contender(workers: list, shard, steps: int, keep: int = 2) -> float:
    """Seconds a step through Ray tasks, as the sync driver sends them."""
    import ray

    from cluster.drivers.sync import StepWindow

    window = StepWindow(workers, [shard], [shard.params_now.remote()])
    ray.get([w.receive.remote(shard.params_now.remote()) for w in workers])
    t0 = time.perf_counter()
    for step in range(steps):
        window.submit(step)
        for _ in window.applied(keep):
            pass
    for _ in window.applied(0):
        pass
    return (time.perf_counter() - t0) / steps


def compiled_graph(workers: list, shard):
    """``compute_held -> apply_sync -> receive`` compiled; every worker's ``receive`` is an
    output."""
    from ray.dag import InputNode, MultiOutputNode

    with InputNode() as step:
        params = shard.apply_sync.bind(step, *[w.compute_held.bind(step) for w in workers])
        dag = MultiOutputNode([w.receive.bind(params) for w in workers])
    return dag.experimental_compile()


def compiled_contender(workers: list, shard, steps: int, keep: int = 2) -> float:
    """Seconds a step through a compiled graph, ``keep`` runs outstanding. The graph is compiled
    for this run (after 5 untimed steps) and torn down after it, so it polls during no other
    contender's run."""

    graph = compiled_graph(workers, shard)
    try:
        return _timed_runs(graph, steps, keep)
    finally:
        graph.teardown()


def _timed_runs(graph, steps: int, keep: int) -> float:
    import ray

    for step in range(5):
        ray.get(graph.execute(step))
    pending = []
    t0 = time.perf_counter()
    for step in range(steps):
        pending.append(graph.execute(step))
        while len(pending) > keep:
            ray.get(pending.pop(0))
    for ref in pending:
        ray.get(ref)
    return (time.perf_counter() - t0) / steps


def idle_cpu_share(pids: list[int], seconds: float = 3.0) -> list[float]:
    """CPU seconds per wall second of each process while nothing is asked of it."""
    import psutil

    procs = [psutil.Process(p) for p in pids]
    before = [sum(p.cpu_times()[:2]) for p in procs]
    time.sleep(seconds)
    return [(sum(p.cpu_times()[:2]) - b) / seconds for p, b in zip(procs, before, strict=True)]


def count_for(seconds: float) -> int:
    """Loop iterations one process completes in ``seconds`` (a unit of CPU work)."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def work_done(seconds: float = 2.0) -> int:
    """Iterations of :func:`count_for` in one process per core at once: how much CPU other
    work gets beside the actors."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        return sum(pool.map(count_for, [seconds] * os.cpu_count()))


def measure(n_workers: int, iterations: int, compute_s: float, n: int, cycles: int,
            steps: int) -> dict:
    """Both contenders with ``n_workers`` stand-in workers and one shard, fresh actors; the
    overhead is against ``compute_s``, the workers' ``iterations`` timed alone."""
    import ray

    worker_cls = ray.remote(num_cpus=0)(StandInWorker)
    shard_cls = ray.remote(num_cpus=0)(StandInShard)
    workers = [worker_cls.remote(iterations, n) for _ in range(n_workers)]
    shard = shard_cls.remote(n)
    pids = ray.get([a.pid.remote() for a in (*workers, shard)])
    idle_tasks = idle_cpu_share(pids)
    work_beside_tasks = work_done()
    try:
        tasks_contender(workers, shard, 20)  # untimed warm-up
        times: dict[str, list[float]] = {"tasks": [], "compiled": []}
        runs = {"tasks": lambda: tasks_contender(workers, shard, steps),
                "compiled": lambda: compiled_contender(workers, shard, steps)}
        for c in range(cycles):
            for name in (list(runs) if c % 2 == 0 else list(reversed(runs))):
                times[name].append(runs[name]())
        graph = compiled_graph(workers, shard)  # idle, for the two figures of its waiting
        ray.get(graph.execute(0))
        idle_compiled = idle_cpu_share(pids)
        work_beside_compiled = work_done()
        graph.teardown()
    finally:
        for a in (*workers, shard):
            ray.kill(a)
    return {
        "step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "per_cycle_step_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "overhead_vs_compute": {k: statistics.median(v) / compute_s - 1
                                for k, v in times.items()},
        "idle_cpu_share": {"tasks": idle_tasks, "compiled": idle_compiled,
                           "processes": ["worker"] * n_workers + ["shard"]},
        "other_work_beside_idle_compiled_graph": work_beside_compiled / work_beside_tasks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", type=int, choices=sorted(STAGES), default=1,
                   help="the demo stage whose step time and payload the stand-ins take")
    p.add_argument("--compute-ms", type=float, help="a worker's step (default: the stage's)")
    p.add_argument("--payload-bytes", type=int, help="bytes each way (default: the stage's)")
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--steps", type=int, default=200, help="steps a contender runs a cycle")
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray

    from pipeline.pool import local_ray_settings, start_local_ray

    compute_ms = args.compute_ms or STAGES[args.stage]["compute_ms"]
    payload = args.payload_bytes or STAGES[args.stage]["payload_bytes"]
    iterations, compute_s = iterations_for(compute_ms / 1e3)
    start_local_ray(os.cpu_count())
    try:
        time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
        by_workers = {str(k): measure(k, iterations, compute_s, payload // 4, args.cycles,
                                      args.steps) for k in (1, 2)}
    finally:
        ray.shutdown()
    result = {
        "benchmark": "compiled_graph",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ray": ray.__version__},
        "ray_settings": local_ray_settings(),
        "stage": args.stage, "compute_ms": compute_ms, "payload_bytes_each_way": payload,
        "compute_iterations": iterations, "compute_ms_alone": 1e3 * compute_s,
        "cycles": args.cycles, "steps_per_cycle": args.steps, "steps_outstanding": 2,
        "reference": "compute_ms_alone: the stand-in's work timed alone in this process, idle "
                     "(a step cannot take less)",
        "workers": by_workers,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
