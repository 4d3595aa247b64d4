"""What keeping freed memory (:mod:`models.kernels.allocator`) buys: the same work with glibc's
own ``malloc`` settings (``CATNEURON_MALLOC=default``, the reference) and with the package's,
each in fresh processes, alternated.

Contenders, one torch and numba thread unless said:

- ``conv2d``: the tied stage's convolution of 64 grey 64x64 frames with 32 7x7 filters;
- ``conv_rbm_cd1``: a ConvRBM CD-1 step on those frames (``benchmarks/rbm.py``'s
  ``tied_conv_rbm_cd1``), with the same process's fp32 matmul (2048^2) for its ratio;
- ``elementwise``: ``x * 2`` on 12,000 x 4,096 floats (196 MB, a whitening fit's windows);
- with ``--run RUN``: ``python -m jobs.evaluate --run RUN`` and ``catneuron visualize --run RUN``
  on copies of the run (wall, user and system seconds, peak resident memory), both torch
  threads, and whether both settings wrote the same ``evaluation.json``.

Per contender: best-of-``--repeat`` milliseconds, minor page faults per call
(``getrusage``), and the process's peak resident memory.

Usage::

    python benchmarks/allocator.py --run runs/demo/train --out benchmarks/results/allocator.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import cli, command_line, emit

MODES = {"glibc_default": {"CATNEURON_MALLOC": "default"}, "kept": {"CATNEURON_MALLOC": ""}}


def timed(fn, repeat: int) -> dict:
    """Best-of-``repeat`` ms of ``fn()`` after one warm-up call, minor faults per call, and the
    process's CPU seconds per wall second over the timed calls (1.0: one thread worked). The
    warm-up's first numba-parallel call resets the OpenMP thread count, so one thread is set
    again after it (as ``benchmarks/rbm.py`` does)."""
    import numba
    import torch

    fn()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    best, faults, cpu, wall = float("inf"), [], 0.0, 0.0
    for _ in range(repeat):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        cpu, wall, best = cpu + time.process_time() - c0, wall + dt, min(best, dt)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {"ms": best * 1e3, "minor_faults_per_call": min(faults), "cpu_per_wall": cpu / wall}


def kernels(repeat: int) -> dict:
    """(in a fresh process) the kernel contenders under this process's allocator setting."""
    import torch
    import torch.nn.functional as F
    from rbm import step_flops  # the matmul and convolution FLOPs, as rbm.py counts them

    from jobs.config import load
    from models.kernels.allocator import keep_freed_memory
    from models.stages.tied import PerPositionConvRBM

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    config = load("demo")
    tied = config.model.stages[0]
    x = torch.randn(64, 1, 64, 64, generator=g)
    w = torch.randn(tied.n_maps, 1, tied.field, tied.field, generator=g)
    a, b = (torch.randn(2048, 2048, generator=g) for _ in range(2))
    rbm = PerPositionConvRBM(1, tied.field, tied.n_maps, stride=tied.stride, visible="gaussian",
                             config=tied.rbm_config(), update=config.update, generator=g)
    big = torch.randn(12000, 4096, generator=g)
    out = {"kept": keep_freed_memory(),
           "matmul_2048": timed(lambda: a @ b, repeat),
           "conv2d": timed(lambda: F.conv2d(x, w), repeat),
           "conv_rbm_cd1": timed(lambda: rbm.apply_update(rbm.compute_update(x)), repeat),
           "elementwise": timed(lambda: big * 2, repeat)}
    out["matmul_2048"]["gflops"] = 2 * 2048**3 / out["matmul_2048"]["ms"] / 1e6
    flops = {"conv2d": step_flops(lambda: F.conv2d(x, w)),
             "conv_rbm_cd1": step_flops(lambda: rbm.compute_update(x))}
    for name in ("conv2d", "conv_rbm_cd1"):
        out[name]["gflops"] = flops[name] / out[name]["ms"] / 1e6
        out[name]["ratio_to_matmul"] = out[name]["gflops"] / out["matmul_2048"]["gflops"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def job(argv: list[str], env: dict) -> dict:
    """Wall, user and system seconds and peak resident memory of one job process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return {"wall_s": time.perf_counter() - t0, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def jobs(run: Path, env: dict, scratch: Path) -> dict:
    """Evaluate, then visualize, on a fresh copy of ``run`` (file times kept)."""
    copy = scratch / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy, copy_function=shutil.copy2)
    py = sys.executable
    out = {"evaluate": job([py, "-m", "jobs.evaluate", "--run", str(copy), "--quiet"], env),
           "visualize": job([py, "-m", "jobs.visualize", "--run", str(copy), "--quiet"], env)}
    out["evaluation"] = json.loads((copy / "evaluation.json").read_text())
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a trained run for the evaluate/visualize contenders")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two settings")
    p.add_argument("--out", help="write the JSON here as well as to stdout")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        print(json.dumps(kernels(args.repeat)))
        return 0
    results: dict = {m: {"kernels": [], "jobs": []} for m in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for mode, extra in MODES.items():
                env = {**os.environ, **extra}
                inner = subprocess.run([sys.executable, __file__, "--inner", "--repeat",
                                        str(args.repeat)], env=env, check=True,
                                       capture_output=True, text=True)
                results[mode]["kernels"].append(json.loads(inner.stdout.splitlines()[-1]))
                if args.run:
                    results[mode]["jobs"].append(jobs(args.run, env, Path(scratch)))
    doc = summary(args, results)
    emit(doc, args.out)
    return 0


def summary(args, results: dict) -> dict:
    """Best (kernels) and fastest-round (jobs) figures per setting, and kept ÷ default."""
    def best(mode: str, name: str) -> dict:
        return min((r[name] for r in results[mode]["kernels"]), key=lambda r: r["ms"])

    names = ("matmul_2048", "conv2d", "conv_rbm_cd1", "elementwise")
    doc = {"benchmark": "allocator", "command": command_line(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "libc": " ".join(platform.libc_ver())},
           "reference": "glibc_default: CATNEURON_MALLOC=default (glibc's own thresholds), "
                        "the same work in the same run",
           "kernels": {m: {n: best(m, n) for n in names} for m in MODES},
           "kernel_speedup": {n: best("glibc_default", n)["ms"] / best("kept", n)["ms"]
                              for n in names}}
    if args.run:
        doc["run"] = str(args.run)
        for name in ("evaluate", "visualize"):
            doc[name] = {m: min((r[name] for r in results[m]["jobs"]),
                                key=lambda r: r["wall_s"]) for m in MODES}
            doc[name]["speedup"] = doc[name]["glibc_default"]["wall_s"] / doc[name]["kept"][
                "wall_s"]
        evals = [r["evaluation"] for m in MODES for r in results[m]["jobs"]]
        doc["same_evaluation_json"] = all(e == evals[0] for e in evals)
    return doc


if __name__ == "__main__":
    sys.exit(cli(main))
