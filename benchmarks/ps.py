"""Parameter-server throughput: single process vs Downpour workers on Ray, same model and data.

Measures, for stage ``--stage`` of config ``--config`` (default: the demo's stage 0) at the
config's batch size, one torch thread everywhere:

- ``single``: frames/s of the plain loop ``apply_update(compute_update(stage_input(batch)))``
  (:class:`cluster.reference.SingleProcessLoop`) in a spawned process of its own, as a worker
  has: not in this process, which holds Ray's driver and its threads (the loop ran 15-20 %
  slower here than alone or in a worker, which made the overhead read negative);
- ``single_x2``: the same loop in 2 processes at once, no Ray: the machine's own 1 -> 2 ceiling
  for this compute (shared caches and memory bandwidth), ``machine_ceiling_2_vs_1``;
- ``ps_1``, ``ps_2``: frames/s of 1 and 2 async workers (Ray actors) against the config's
  parameter-server shards, at the config's push/fetch periods, push kind, transfer dtype, prefetch
  setting and shard count (or ``--n-push``, ``--n-fetch``, ``--push``, ``--transfer-dtype``,
  ``--prefetch``, ``--ps-shards``), wall clock from submitting the workers' chunks to the last
  one's end; and again at n_push = n_fetch = 1 (``at_period_1``), so both settings are on record.
  With ``train.mode = "sync"`` (or ``--mode sync``) they are instead 1 and 2 workers in the
  synchronous schedule, the trainer's own steps (:func:`cluster.drivers.sync.submit_step`: every
  worker's update, then the shard's mean of them, at most ``max_in_flight`` steps outstanding;
  as Ray tasks or, with ``--sync-transport compiled``, as one compiled graph), wall clock from
  the first step sent to the last one applied;
- the stage every contender starts from: a stack seeded like the trainer's, its earlier stages
  loaded from ``--run``'s ``model.pt`` when given (untrained otherwise: the same arithmetic, so
  fine for timing), stage ``--stage`` prepared by :func:`cluster.stage.prepare_stage` (whitening
  and initial units of a stage fitted to data), written to a temporary ``model.pt`` that the
  spawned references and the worker actors load, as the trainer's workers do;
- frames/s counts the learner's rows (``len(v)`` per step, as the workers count them): a batch
  of frames for a dense or local stage, ``rows_per_frame`` patches or windows per frame for a
  tied or competitive one;
- overhead = 1 - ps_1 / single (goal <= 10%), scaling = ps_2 / ps_1 (goal >= 1.8), and
  scaling as a share of the machine's ceiling;
- per worker step, milliseconds spent fetching (waiting for parameters), preparing the input
  batch (overlapped with the fetch when there is one), computing the update, handing a push to
  the sender thread and waiting for pushes in flight; per update, the shard's apply time;
- bytes moved per update and per worker step: the update pushed plus the parameters fetched
  (float32 or bfloat16 on the wire), as the setting implies and as the shards counted them over
  the timed cycles (``measured_bytes_per_worker_step``), and each shard's memory (its slices and
  optimiser state, ``shard_memory_bytes``);
- the local Ray's settings the contenders ran with (``ray_settings``,
  :func:`pipeline.pool.local_ray_settings`).

How it times: this VM's speed drifts by 10-40 % within minutes, more than the differences being
measured. So every contender stays alive (1 spawned process for the single loop, 2 for
``single_x2``, the shard and worker actors of a setting) and the benchmark runs ``--cycles``
short cycles, each timing ``--steps`` steps of single, single_x2, ps_1 and ps_2 back to back (in
reverse order every other cycle). The figures are ratios of the totals over all cycles (frames
over seconds, per contender); the medians of the per-cycle ratios and their spread come with
them. ``ps_1`` runs worker 0 of the setting's 2 worker actors (worker 1 idles meanwhile); in
sync mode ``ps_1`` and ``ps_2`` are two sets of actors, since a sync step needs every worker.

Warm caches: a stage above 0 reads its input through each process's
:class:`models.read_cache.ReadCache` (the single loops as the workers), so every contender fills
its cache with its training frames first, as the trainer's workers do before their first step,
then runs ``--warmup`` steps (raised to an epoch of the single loop's), and the cycles time what
a run does after its first epoch.

One thread per process everywhere: torch's and numba's (``NUMBA_NUM_THREADS=1`` here, in the
spawned references and, through ``cluster.ps.ONE_THREAD_ENV``, in the actors).

Usage (needs a dataset, e.g. ``catneuron ingest --demo --out runs/demo/data``)::

    python benchmarks/ps.py --data runs/demo/data --out ps.json          # the demo's setting
    # the demo's stage 1 on the stage 0 of a trained run:
    python benchmarks/ps.py --data runs/demo/data --stage 1 --run runs/demo/train --out ps1.json
    # Downpour batching, with n_push = n_fetch = 1 measured in the same run (results/ps.json):
    python benchmarks/ps.py --data runs/demo/data --mode async --n-push 4 --n-fetch 4 \
        --out benchmarks/results/ps.json
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_file import cli, emit

# One thread everywhere, numba's pool included (read when numba is imported): the single-process
# references, their spawned children and the Ray actors (cluster.ps.ONE_THREAD_ENV).
os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def load_stack(config, path: str):
    """A stack of ``config``'s geometry holding the stages saved in ``path`` (a ``model.pt``)."""
    import torch

    from cluster.state_io import read_state
    from models.stack import RBMStack

    stack = RBMStack(config.model, update=config.update,
                     generator=torch.Generator().manual_seed(config.train.seed), device="cpu")
    stack.load_state_dict(read_state(path)["state"])
    return stack


def prepared_stack(config, stage: int, run: str | None, out_path: str):
    """The stack every contender starts from: seeded like the trainer's, the stages of
    ``run``'s ``model.pt`` below ``stage`` loaded when ``run`` is given, stage ``stage`` prepared
    (:func:`cluster.stage.prepare_stage`); saved to ``out_path`` for the other processes.
    Returns (stack, frames the preparation used, seconds it took)."""
    import torch

    from cluster.stage import prepare_stage
    from cluster.state_io import read_state, write_state
    from models.stack import RBMStack

    stack = RBMStack(config.model, update=config.update,
                     generator=torch.Generator().manual_seed(config.train.seed), device="cpu")
    if run is not None:  # earlier stages only: the run may have trained this one at other rates
        saved = read_state(str(Path(run) / "model.pt"))["state"]["rbms"]
        if len(saved) < stage:
            raise ValueError(f"{run}/model.pt holds {len(saved)} stages; stage {stage} needs "
                             f"the {stage} below it")
        for k in range(stage):
            stack.stages[k].load_state_dict(saved[k])  # shapes checked
    t0 = time.perf_counter()
    n = prepare_stage(config, stack, stage)
    seconds = time.perf_counter() - t0
    write_state(out_path, {"config": stack.config.to_dict(), "state": stack.state_dict()})
    return stack, n, seconds


def _loop_process(conn, config_path: str, overrides: list[str], stage: int,
                  stack_path: str) -> None:
    """A spawned process holding a SingleProcessLoop: runs ``steps`` when sent, until None."""
    from cluster.reference import SingleProcessLoop
    from jobs.config import load

    config = load(config_path, overrides)
    loop = SingleProcessLoop(config, stage, load_stack(config, stack_path))
    loop.fill_cache()
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(loop.run(steps))


class ConcurrentLoops:
    """The single-process loop in ``n`` spawned processes at once (no Ray): ``n = 1`` is the
    reference, ``n = 2`` the machine's own 1 -> 2 ceiling. Frames/s = all frames over the span
    from the first start to the last end, as the processes timed them."""

    def __init__(self, config_path: str, overrides: list[str], stage: int, stack_path: str,
                 n: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_loop_process, args=(child, config_path, overrides, stage,
                                                             stack_path),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for c in self.conns:
            if c.recv() != "ready":
                raise RuntimeError("a reference process failed to start")

    def run(self, steps: int) -> dict:
        for c in self.conns:
            c.send(steps)
        parts = [c.recv() for c in self.conns]
        span = max(p["end"] for p in parts) - min(p["start"] for p in parts)
        frames = sum(p["frames"] for p in parts)
        return {"frames": frames, "seconds": span, "frames_per_s": frames / span,
                "per_process_frames_per_s": [p["frames_per_s"] for p in parts]}

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=10)


def timed_actors(config, stage: int, stack_path: str, rbm):
    """Stage ``stage``'s shard and worker actors as the trainer starts them, the shards holding
    ``rbm``'s parameters and the workers the stages below from the stack saved at
    ``stack_path``, each worker's caches filled before its first step (as the trainer does);
    returns (the actors, their temporary stage folder)."""
    import ray

    from cluster.stage import start_stage

    folder = tempfile.TemporaryDirectory(prefix="ps-bench-")
    actors = start_stage(config, stage, rbm, folder.name, worker_cpus=0.45,
                         stack_path=stack_path)
    ray.get([w.fill_cache.remote() for w in actors.workers])
    return actors, folder


class ParameterServer:
    """The shard actors and 2 worker actors of one setting, kept alive across timed chunks; each
    worker continues from where its last chunk ended (data position, sequence numbers, step)."""

    def __init__(self, config, stage: int, stack_path: str) -> None:
        import dataclasses

        from cluster.sharding import WIRE_BYTES

        # 2 workers whatever the config says, and no monitoring on the timed path
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, n_workers=2, log_interval=10**9))
        tc = config.train
        rbm = load_stack(config, stack_path).rbms[stage]
        self.actors, self._stage_dir = timed_actors(config, stage, stack_path, rbm)
        self.shards, self.workers = self.actors.shards, self.actors.workers
        self.state = [((0, 0), 0, 0) for _ in self.workers]  # position, next seq, next step
        # bytes of the parameters on the wire (float32, or bfloat16 transfers)
        self.param_bytes = WIRE_BYTES[tc.transfer_dtype] * sum(
            v.numel() for v in rbm.params.values())
        self.n_push, self.n_fetch = tc.n_push, tc.n_fetch

    def run(self, n_workers: int, steps: int) -> dict:
        """``steps`` steps on each of the first ``n_workers`` workers at once."""
        import ray

        t0 = time.perf_counter()
        refs = [w.run.remote(steps, *self.state[k])
                for k, w in enumerate(self.workers[:n_workers])]
        results = ray.get(refs)
        wall = time.perf_counter() - t0
        for k, r in enumerate(results):
            self.state[k] = (tuple(r["position"]), r["seq_end"], self.state[k][2] + steps)
        frames = sum(r["frames"] for r in results)
        return {"frames": frames, "seconds": wall, "frames_per_s": frames / wall,
                "results": results}

    def shard_info(self) -> list[dict]:
        import ray

        return ray.get([s.info.remote() for s in self.shards])

    def close(self) -> None:
        self.actors.kill()
        self._stage_dir.cleanup()


class SyncServers:
    """The synchronous schedule's contenders: a stage's actors started twice, with 1 worker and
    with 2 (one shard each), kept alive across timed chunks; each chunk continues the steps of
    its set (:func:`cluster.drivers.sync.submit_step`, the trainer's own step, at most
    ``max_in_flight`` steps outstanding). Separate sets, since a sync step needs every worker
    of its set: worker 1 of one set could not sit out the 1-worker chunks."""

    def __init__(self, config, stage: int, stack_path: str, rows_per_step: int) -> None:
        from cluster.plan import wire_schedule
        from cluster.sharding import WIRE_BYTES

        self.rows_per_step, self.max_in_flight = rows_per_step, config.train.max_in_flight
        rbm = load_stack(config, stack_path).rbms[stage]
        self.sets = {n: _SyncSet(config, stage, stack_path, rbm, n) for n in (1, 2)}
        wire = wire_schedule(config.train)  # an update up and the parameters back every step
        self.param_bytes = WIRE_BYTES[wire.transfer_dtype] * sum(
            v.numel() for v in rbm.params.values())
        self.n_push, self.n_fetch = wire.n_push, wire.n_fetch

    def run(self, n_workers: int, steps: int) -> dict:
        """``steps`` synchronous steps of the ``n_workers``-worker set."""
        s = self.sets[n_workers]
        window = s.open_window()  # a compiled graph polls during its own runs only
        records = []
        t0 = time.perf_counter()
        for _ in range(steps):
            window.submit(s.step)
            s.step += 1
            records += [r for _, rs in window.applied(self.max_in_flight) for r in rs]
        records += [r for _, rs in window.applied(0) for r in rs]
        wall = time.perf_counter() - t0
        window.close()
        frames = steps * n_workers * self.rows_per_step
        results = [{"steps": steps, "seconds": wall, "staleness_mean": 0.0,
                    "seconds_compute": sum(self.rows_per_step / r["frames_per_s"]
                                           for r in records if r["worker"] == k)}
                   for k in range(n_workers)]  # a worker's compute: input and (tasks) load included
        return {"frames": frames, "seconds": wall, "frames_per_s": frames / wall,
                "results": results}

    def shard_info(self) -> list[dict]:
        import ray

        return [i for n in (1, 2) for i in ray.get([sh.info.remote()
                                                      for sh in self.sets[n].shards])]

    def close(self) -> None:
        for s in self.sets.values():
            s.close()


class _SyncSet:
    """One set of sync actors: ``n`` workers and the config's shards, their next step and the
    steps in flight (:func:`cluster.drivers.sync.step_window`: Ray tasks or a compiled graph,
    as ``train.sync_transport`` says)."""

    def __init__(self, config, stage: int, stack_path: str, rbm, n: int) -> None:
        tc, share = config.train, config.train.n_workers / n
        # a worker of a smaller set reads more of the frames: its caches grow with them (as the
        # single loop's, which holds every frame), so each set runs from its caches alone
        config = dataclasses.replace(config, train=dataclasses.replace(
            tc, n_workers=n, log_interval=10**9, read_cache_mb=tc.read_cache_mb * share,
            frame_cache_mb=tc.frame_cache_mb * share))
        from cluster.drivers.sync import step_window

        self.actors, self._dir = timed_actors(config, stage, stack_path, rbm)
        self.shards = self.actors.shards
        self.window_class = step_window(tc.sync_transport)
        self.step = 0

    def open_window(self):
        """A window of steps from the shards' parameters now (for a compiled graph: compiled
        now; its ``close`` tears it down)."""
        return self.window_class(self.actors.workers, self.shards,
                                 [sh.params_now.remote() for sh in self.shards])

    def close(self) -> None:
        self.actors.kill()
        self._dir.cleanup()


def _ratios(t: dict) -> dict:
    """Overhead, scaling and ceiling from frames/s of single, single_x2, ps_1, ps_2."""
    scaling = t["ps_2"] / t["ps_1"]
    ceiling = t["single_x2"] / t["single"]
    return {"overhead_vs_single": 1 - t["ps_1"] / t["single"], "scaling_2_vs_1": scaling,
            "machine_ceiling_2_vs_1": ceiling, "scaling_share_of_ceiling": scaling / ceiling}


def measure(config, single: ConcurrentLoops, pair: ConcurrentLoops, cycles: int, steps: int,
            warmup: int, *, stage: int, stack_path: str, rows_per_step: int) -> dict:
    """``cycles`` interleaved cycles of single, single_x2, ps_1 and ps_2 for one setting (the
    Downpour workers, or the synchronous schedule when ``config.train.mode`` is ``"sync"``)."""
    import numpy as np

    if config.train.mode == "sync":
        ps = SyncServers(config, stage, stack_path, rows_per_step)
    else:
        ps = ParameterServer(config, stage, stack_path)
    try:
        for n in (1, 2):  # untimed: numba's first calls, the actors' first transfers
            ps.run(n, warmup)
        before = ps.shard_info()
        contenders = {"single": single.run, "single_x2": pair.run,
                      "ps_1": lambda s: ps.run(1, s), "ps_2": lambda s: ps.run(2, s)}
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        for c in range(cycles):
            order = list(contenders) if c % 2 == 0 else list(reversed(contenders))
            for name in order:
                runs[name].append(contenders[name](steps))
        infos = ps.shard_info()
    finally:
        ps.close()
    totals = {name: sum(r["frames"] for r in rs) / sum(r["seconds"] for r in rs)
              for name, rs in runs.items()}
    per_cycle = [_ratios({name: runs[name][c]["frames_per_s"] for name in runs})
                 for c in range(cycles)]

    def breakdown(name: str) -> dict:
        """Mean ms per worker step in each phase (async: fetch, input, compute, push, wait;
        sync: compute, the input and the parameters' load included), and the rest (other)."""
        results = [r for run in runs[name] for r in run["results"]]
        out = {k: 1e3 * float(np.mean([r[f"seconds_{k}"] / r["steps"] for r in results]))
               for k in ("fetch", "input", "compute", "push", "wait")
               if f"seconds_{k}" in results[0]}
        out["other"] = 1e3 * float(np.mean([r["seconds"] / r["steps"] for r in results])) \
            - sum(out.values())
        return out

    return {**_ratios(totals),
            "frames_per_s": totals,
            "median_of_cycles": {k: statistics.median(f[k] for f in per_cycle)
                                 for k in per_cycle[0]},
            "range_of_cycles": {k: [min(f[k] for f in per_cycle), max(f[k] for f in per_cycle)]
                                for k in per_cycle[0]},
            "per_cycle": per_cycle,
            "worker_ms_per_step": {"ps_1": breakdown("ps_1"), "ps_2": breakdown("ps_2")},
            "staleness_mean": {name: float(np.mean([r["staleness_mean"] for run in runs[name]
                                                    for r in run["results"]]))
                               for name in ("ps_1", "ps_2")},
            "shard_apply_ms_per_update": [
                1e3 * (i["seconds_apply"] - b["seconds_apply"])
                / max(i["n_applied"] - b["n_applied"], 1) for i, b in zip(infos, before,
                                                                        strict=True)],
            "updates_applied": [i["n_applied"] - b["n_applied"]
                                for i, b in zip(infos, before, strict=True)],
            "bytes_per_update": ps.param_bytes * (1 + ps.n_push / ps.n_fetch),
            "bytes_per_worker_step": ps.param_bytes * (1 / ps.n_push + 1 / ps.n_fetch),
            "measured_bytes_per_worker_step": measured_bytes(runs, infos, before),
            "shard_memory_bytes": [i["memory_bytes"] for i in infos],
            "param_bytes": ps.param_bytes}


def measured_bytes(runs: dict, infos: list[dict], before: list[dict]) -> float:
    """Bytes the shards received and sent over the timed cycles (the arrays of every push,
    fetch and reply, counted by the shards) per worker step."""
    steps = sum(r["steps"] for name in ("ps_1", "ps_2") for run in runs[name]
                for r in run["results"])
    moved = sum(i["bytes_in"] + i["bytes_out"] - b["bytes_in"] - b["bytes_out"]
                for i, b in zip(infos, before, strict=True))
    return moved / max(steps, 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--stage", type=int, default=0, help="the stage to train (0 = the first)")
    p.add_argument("--run", help="a trained run folder: its model.pt gives the earlier stages "
                                 "(default: an untrained stack, fine for timing)")
    p.add_argument("--data", default="runs/demo/data", help="dataset folder (catneuron ingest)")
    p.add_argument("--steps", type=int, default=48,
                   help="timed steps per contender and cycle (per worker for the PS)")
    p.add_argument("--cycles", type=int, default=10,
                   help="interleaved cycles of (single, single x2, PS 1 worker, PS 2 workers)")
    p.add_argument("--warmup", type=int, default=8,
                   help="untimed steps per contender first (stage > 0: at least one epoch)")
    p.add_argument("--mode", choices=("sync", "async"),
                   help="the schedule (default: the config's train.mode)")
    p.add_argument("--sync-transport", choices=("tasks", "compiled"),
                   help="sync only: Ray tasks or a compiled graph (default: the config's "
                        "train.sync_transport)")
    p.add_argument("--n-push", type=int, help="push period (default: the config's)")
    p.add_argument("--n-fetch", type=int, help="fetch period (default: the config's)")
    p.add_argument("--prefetch", action=argparse.BooleanOptionalAction,
                   help="overlap fetches with compute (default: the config's)")
    p.add_argument("--push", choices=("gradient", "delta", "average"),
                   help="what a push carries (default: the config's train.push)")
    p.add_argument("--transfer-dtype", choices=("float32", "bfloat16"),
                   help="precision on the wire (default: the config's train.transfer_dtype)")
    p.add_argument("--ps-shards", type=int,
                   help="parameter-server shards (default: the config's train.n_ps_shards)")
    p.add_argument("--no-period-1", action="store_true",
                   help="skip the second measurement at n_push = n_fetch = 1")
    p.add_argument("--out", help="write the JSON here as well as to stdout")
    return p


def setting(args: argparse.Namespace) -> dict:
    """The measured setting: each flag, else the config's value for the stage measured."""
    from cluster.plan import wire_schedule
    from jobs.config import load

    tc = load(args.config, [f'data.path="{args.data}"']).train.for_stage(args.stage)
    mode = args.mode or tc.mode
    if mode == "sync":  # the periods and wire type a sync step has, whatever the config says
        w = wire_schedule(dataclasses.replace(tc, mode=mode))
        return {"mode": mode, "n_push": w.n_push, "n_fetch": w.n_fetch, "prefetch": False,
                "push": tc.push, "transfer_dtype": w.transfer_dtype,
                "n_ps_shards": args.ps_shards or tc.n_ps_shards,
                "sync_transport": args.sync_transport or tc.sync_transport}
    return {"mode": mode, "sync_transport": tc.sync_transport, "n_push": args.n_push or tc.n_push,
            "n_fetch": args.n_fetch or tc.n_fetch,
            "prefetch": tc.prefetch if args.prefetch is None else args.prefetch,
            "push": args.push or tc.push,
            "transfer_dtype": args.transfer_dtype or tc.transfer_dtype,
            "n_ps_shards": args.ps_shards or tc.n_ps_shards}


def async_flags(args: argparse.Namespace) -> list[str]:
    """The Downpour-only flags given (push and fetch periods, prefetch, push kind, wire type)."""
    given = {"--n-push": args.n_push, "--n-fetch": args.n_fetch, "--prefetch": args.prefetch,
             "--push": args.push, "--transfer-dtype": args.transfer_dtype}
    return [flag for flag, value in given.items() if value is not None]


def overrides(data: str, s: dict, n_push: int, n_fetch: int) -> list[str]:
    """Config overrides for setting ``s`` at push/fetch periods ``n_push``/``n_fetch``."""
    return [f'data.path="{data}"', "data.holdout_frames=0", f'train.mode="{s["mode"]}"',
            f"train.n_push={n_push}",
            f"train.n_fetch={n_fetch}", f"train.prefetch={str(s['prefetch']).lower()}",
            f'train.push="{s["push"]}"', f'train.transfer_dtype="{s["transfer_dtype"]}"',
            f"train.n_ps_shards={s['n_ps_shards']}",
            f'train.sync_transport="{s["sync_transport"]}"']


def warmup_steps(config, stage: int, requested: int) -> int:
    """Untimed steps per contender: ``requested``, and for a stage above 0 (its input cached)
    at least one pass of the single loop over every training frame (a worker holds fewer)."""
    from cluster.worker import split_holdout
    from pipeline.reader import FrameReader

    if stage == 0:
        return requested
    train, _ = split_holdout(config.data.path, config.data.holdout_frames)
    frames = FrameReader(config.data.path, batch_size=1, shards=train).num_rows()
    return max(requested, -(-frames // config.data.batch_size) + 1)


def measure_periods(args: argparse.Namespace, s: dict, periods: list[tuple[int, int]],
                    stack_path: str, rows_per_step: int) -> dict:
    """:func:`measure` at each (n_push, n_fetch) of ``periods``, the single-process contenders
    kept alive across them (all starting from the stack saved at ``stack_path``)."""
    import ray

    from jobs.config import load

    first = overrides(args.data, s, *periods[0])
    config = load(args.config, first)
    warmup = warmup_steps(config, args.stage, args.warmup)
    single = ConcurrentLoops(args.config, first, args.stage, stack_path, n=1)
    pair = ConcurrentLoops(args.config, first, args.stage, stack_path)
    single.run(warmup)
    pair.run(warmup)
    from pipeline.pool import start_local_ray

    start_local_ray(os.cpu_count())  # a fresh local Ray on 127.0.0.1, as the trainer's own
    try:
        time.sleep(5)  # Ray's own processes are busy for a few seconds after ray.init
        return {period: measure(load(args.config, overrides(args.data, s, *period)), single, pair,
                                args.cycles, args.steps, warmup, stage=args.stage,
                                stack_path=stack_path, rows_per_step=rows_per_step)
                for period in periods}
    finally:
        ray.shutdown()
        single.close()
        pair.close()


def main(argv: list[str] | None = None) -> int:
    import ray
    import torch

    from jobs.config import load
    from pipeline.pool import local_ray_settings

    args = build_parser().parse_args(argv)
    s = setting(args)
    if s["mode"] == "sync" and (asynchronous := async_flags(args)):
        print(f"{', '.join(asynchronous)}: Downpour settings, but the schedule measured is sync "
              f"(the config's train.mode); add --mode async", file=sys.stderr)
        return 2
    periods = [(s["n_push"], s["n_fetch"])]
    if not args.no_period_1 and periods[0] != (1, 1) and s["mode"] == "async":
        periods.append((1, 1))
    config = load(args.config, overrides(args.data, s, *periods[0]))
    if not 0 <= args.stage < config.n_stages:
        print(f"--stage {args.stage}: the config has stages 0..{config.n_stages - 1}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ps-bench-stack-") as tmp:
        stack_path = str(Path(tmp) / "model.pt")
        stack, n_prepare, prepare_s = prepared_stack(config, args.stage, args.run, stack_path)
        rows = stack.stage_input(torch.zeros((config.data.batch_size,
                                              *stack.config.input_shapes()[0]),
                                             dtype=torch.uint8), args.stage)
        results = measure_periods(args, s, periods, stack_path, len(rows))
    result = {
        "benchmark": "ps",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "ray": ray.__version__},
        "ray_settings": local_ray_settings(),
        "config": args.config, "stage": args.stage,
        "stage_config": dataclasses.asdict(config.model.stages[args.stage]),
        "learner": type(stack.rbms[args.stage]).__name__,
        "earlier_stages_from": str(Path(args.run) / "model.pt") if args.run else "untrained",
        "prepare": {"frames": n_prepare, "seconds": prepare_s},
        "batch_size": config.data.batch_size,
        "rows_per_step": len(rows), "row_shape": list(rows.shape[1:]),
        "unit": "frames_per_s counts the learner's rows per second (rows_per_step per step)",
        **{k: s[k] for k in ("mode", "sync_transport", "n_ps_shards", "n_push", "n_fetch",
                             "prefetch", "push", "transfer_dtype")},
        "cycles": args.cycles, "steps_per_cycle": args.steps,
        "warmup_steps": warmup_steps(config, args.stage, args.warmup),
        "read_cache_mb": config.train.read_cache_mb if args.stage > 0 else 0,
        **results[periods[0]],
        "goals": {"overhead_vs_single": "<= 0.10", "scaling_2_vs_1": ">= 1.8"},
        "note": "shared 2-core VM: contenders interleaved in short cycles; figures are ratios "
                "of the totals over all cycles",
    }
    if len(periods) > 1:
        result["at_period_1"] = {"n_push": 1, "n_fetch": 1, **results[(1, 1)]}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
