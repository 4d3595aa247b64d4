"""Does a Ray actor slow the training loop down by itself? The same loop in an actor and in a
plain process, no parameter server.

``benchmarks/ps.py`` finds a worker's step longer than the single-process step plus its fetch
and push times. This separates the two possible causes: the actor's process (Ray's threads,
its runtime environment) or the calls. Both contenders hold one
:class:`cluster.reference.SingleProcessLoop` of stage ``--stage`` (one torch thread, numba's
pool at one thread), started the same way, and run ``--steps`` steps when asked:

- ``process``: a spawned process (no Ray in it);
- ``actor``: a Ray actor on a local cluster bound to 127.0.0.1, with the parameter-server
  actors' runtime environment (``cluster.ps.ONE_THREAD_ENV``) and CPU share.

``--cycles`` cycles time each once, in reverse order every other cycle (this VM's speed drifts
within minutes); frames/s are the loop's own (its timer, not the call's), and the figure is
``actor / process`` over the totals. The stage-input cache is filled first for a stage above 0.

Usage::

    python benchmarks/actor_loop.py --data runs/demo/data --out benchmarks/results/actor_loop.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def make_loop(config_name: str, data: str, stage: int):
    """A warm SingleProcessLoop of ``stage`` on ``data`` (its cache filled, 20 steps run)."""
    from cluster.reference import SingleProcessLoop
    from jobs.config import load

    loop = SingleProcessLoop(load(config_name, [f'data.path="{data}"', "data.holdout_frames=0"]),
                             stage)
    loop.fill_cache()
    loop.run(20)
    return loop


def _process(conn, config_name: str, data: str, stage: int) -> None:
    """The plain contender: runs ``steps`` when sent, until None."""
    loop = make_loop(config_name, data, stage)
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(loop.run(steps))


class LoopActor:
    """The actor contender: the same loop, its ``run`` called through Ray."""

    def __init__(self, config_name: str, data: str, stage: int) -> None:
        self.loop = make_loop(config_name, data, stage)

    def run(self, steps: int) -> dict:
        return self.loop.run(steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--data", required=True, help="dataset (catneuron ingest --demo)")
    p.add_argument("--stage", type=int, default=0)
    p.add_argument("--cycles", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out")
    args = p.parse_args(argv)

    import ray

    from cluster.ps import ONE_THREAD_ENV
    from pipeline.pool import loopback_only

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_process, args=(child, args.config, args.data, args.stage),
                       daemon=True)
    proc.start()
    if parent.recv() != "ready":
        raise RuntimeError("the plain process failed to start")
    loopback_only()  # a fresh local cluster on 127.0.0.1, never another one on this machine
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False)
    try:
        time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
        actor = ray.remote(num_cpus=0.45, runtime_env=ONE_THREAD_ENV)(LoopActor).remote(
            args.config, args.data, args.stage)
        ray.get(actor.run.remote(10))

        def in_process(steps: int) -> dict:
            parent.send(steps)
            return parent.recv()

        contenders = {"process": in_process,
                      "actor": lambda steps: ray.get(actor.run.remote(steps))}
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        for c in range(args.cycles):
            for name in (list(contenders) if c % 2 == 0 else list(reversed(contenders))):
                runs[name].append(contenders[name](args.steps))
    finally:
        ray.shutdown()
        parent.send(None)
        proc.join(timeout=10)
    fps = {name: sum(r["frames"] for r in rs) / sum(r["seconds"] for r in rs)
           for name, rs in runs.items()}
    result = {
        "benchmark": "actor_loop", "config": args.config, "stage": args.stage,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ray": ray.__version__},
        "cycles": args.cycles, "steps_per_cycle": args.steps,
        "unit": "frames_per_s counts the learner's rows per second, as ps.py does",
        "frames_per_s": fps,
        "per_cycle_frames_per_s": {name: [r["frames_per_s"] for r in rs]
                                   for name, rs in runs.items()},
        "actor_vs_process": fps["actor"] / fps["process"],
        "reference": "process: the same loop in a spawned process without Ray",
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
