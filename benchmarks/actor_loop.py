"""Does a Ray actor slow the training loop down by itself? The same loop in an actor and in a
plain process, no parameter server.

``benchmarks/ps.py`` finds a worker's step longer than the single-process step plus its fetch
and push times. This separates the two possible causes: the actor's process (Ray's threads,
its runtime environment) or the calls. Both contenders hold one
:class:`cluster.reference.SingleProcessLoop` of stage ``--stage`` (one torch thread, numba's
pool at one thread) on the same prepared stack (``ps.py``'s :func:`prepared_stack`), its cache
filled, and run ``--steps`` steps when asked:

- ``process``: ``ps.py``'s spawned reference process (:class:`ConcurrentLoops` with ``n = 1``,
  no Ray in it);
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
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ps import ConcurrentLoops, load_stack, prepared_stack  # noqa: E402 (sets NUMBA_NUM_THREADS)
from results_file import cli, emit  # noqa: E402


class LoopActor:
    """The actor contender: ``ps.py``'s reference loop (the stack at ``stack_path``, its cache
    filled), its ``run`` called through Ray."""

    def __init__(self, config_name: str, overrides: list[str], stage: int,
                 stack_path: str) -> None:
        from cluster.reference import SingleProcessLoop
        from jobs.config import load

        config = load(config_name, overrides)
        self.loop = SingleProcessLoop(config, stage, load_stack(config, stack_path))
        self.loop.fill_cache()

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
    from jobs.config import load
    from pipeline.pool import start_local_ray

    overrides = [f'data.path="{args.data}"', "data.holdout_frames=0"]
    with tempfile.TemporaryDirectory(prefix="actor-loop-") as tmp:
        stack_path = str(Path(tmp) / "model.pt")
        prepared_stack(load(args.config, overrides), args.stage, None, stack_path)
        process = ConcurrentLoops(args.config, overrides, args.stage, stack_path, n=1)
        start_local_ray(os.cpu_count())  # a fresh local Ray on 127.0.0.1, as the trainer's own
        try:
            time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
            actor = ray.remote(num_cpus=0.45, runtime_env=ONE_THREAD_ENV)(LoopActor).remote(
                args.config, overrides, args.stage, stack_path)
            contenders = {"process": process.run,
                          "actor": lambda steps: ray.get(actor.run.remote(steps))}
            for run in contenders.values():  # untimed: numba's first calls, the first batches
                run(20)
            runs: dict[str, list[dict]] = {name: [] for name in contenders}
            for c in range(args.cycles):
                for name in (list(contenders) if c % 2 == 0 else list(reversed(contenders))):
                    runs[name].append(contenders[name](args.steps))
        finally:
            ray.shutdown()
            process.close()
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
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
