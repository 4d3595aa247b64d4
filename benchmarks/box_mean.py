"""The tied stage's patch means by :func:`models.kernels.box_mean.box_mean` against
``F.avg_pool2d``, at the demo's sizes, and what it does to reading a run's frames through
stage 0, timed in the same run (interleaved) with the floats compared::

    python benchmarks/box_mean.py --run runs/demo/train --out benchmarks/results/box_mean.json

Without ``--run`` only the kernels are timed. ``reads`` times ``RBMStack.reads`` of the top
stage (stage 0 at every pyramid size: what training's input caches, evaluate's baselines and
visualize's scans run) on ``--frames`` training frames, once with the kernel and once with
``F.avg_pool2d`` put back in its place.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from results_file import cli, emit

from models.kernels.box_mean import box_mean
from models.stages import tied

SIDES = (72, 58, 48, 40)  # the demo's pyramid: stage 0 runs at each (configs/demo.toml)


def median_seconds(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up."""
    fn()
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def timed(fn):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def kernels(batch: int, field: int, repeat: int) -> list[dict]:
    """Each side: avg_pool2d and box_mean milliseconds, and whether their floats are equal."""
    rows = []
    for side in SIDES:
        x = torch.rand(batch, 1, side, side, generator=torch.Generator().manual_seed(side))
        ref = median_seconds(lambda x=x: F.avg_pool2d(x, field, 1), repeat)
        new = median_seconds(lambda x=x: box_mean(x, field, 1), repeat)
        rows.append({"side": side, "avg_pool2d_ms": round(ref * 1e3, 2),
                     "box_mean_ms": round(new * 1e3, 2), "speedup": round(ref / new, 2),
                     "equal": torch.equal(F.avg_pool2d(x, field, 1), box_mean(x, field, 1))})
    return rows


def reads(run: str, n_frames: int, repeat: int) -> dict:
    """ms per frame of the top stage's reads with box_mean and with avg_pool2d in its place."""
    from jobs.evaluate import load_run, training_frames

    cfg, stack = load_run(run)
    frames, _, _ = training_frames(cfg, limit=n_frames)
    x, top = torch.from_numpy(frames), stack.n_layers - 1
    contenders = {"box_mean": box_mean, "avg_pool2d": F.avg_pool2d}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    got = {}
    with torch.no_grad():
        stack.reads(x, top)  # warm-up: loads the numba kernels (avg_pool2d needs none)
        try:
            for _ in range(repeat):  # interleaved, so a slow minute of the machine hits both
                for name, fn in contenders.items():
                    tied.box_mean = fn
                    s, got[name] = timed(lambda: stack.reads(x, top))
                    seconds[name].append(s)
        finally:
            tied.box_mean = box_mean
    ms = {k: round(statistics.median(v) / len(x) * 1e3, 3) for k, v in seconds.items()}
    same = all(torch.equal(a, b) for a, b in zip(got["box_mean"], got["avg_pool2d"],
                                                 strict=True))
    return {"frames": len(x), "ms_per_frame": ms,
            "speedup": round(ms["avg_pool2d"] / ms["box_mean"], 2), "equal": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="a trained run with a tied stage 0")
    p.add_argument("--frames", type=int, default=256, help="training frames read [256]")
    p.add_argument("--batch", type=int, default=256, help="maps per kernel call [256]")
    p.add_argument("--field", type=int, default=7, help="window side [7: the demo's]")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per kernel [5]")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = {"what": "patch means of a tied stage: box_mean against F.avg_pool2d",
              "batch": args.batch, "field": args.field, "repeat": args.repeat}
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            result[f"threads_{threads}"] = {"kernels": kernels(args.batch, args.field,
                                                               args.repeat)}
            if args.run:
                result[f"threads_{threads}"]["reads"] = reads(args.run, args.frames,
                                                              args.repeat)
    finally:
        torch.set_num_threads(before)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
