"""Does the trained model depend on the CPU's instruction set? One machine, each library's
kernel choice pinned lower in turn.

torch and numba choose their kernels by the CPU they start on (``models.kernels.arithmetic``).
Another machine can only be had where one is lent, so this script moves one machine's choice
instead: it trains the same short run (``catneuron train --config CONFIG --steps STEPS``, the
synchronous demo setting, one seed) once as the machine chooses, once more the same way (the
reference: a sync run repeats itself bit for bit), and once with each of

- ``ATEN_CPU_CAPABILITY=default`` (ATen's vectorised kernels without AVX),
- ``MKL_CBWR=COMPATIBLE`` and ``MKL_CBWR=AVX2`` (MKL's products and FFTs on a fixed code path),
- ``ONEDNN_MAX_CPU_ISA=SSE41`` (oneDNN's convolutions without AVX),
- ``NUMBA_CPU_NAME=generic`` (numba's loops compiled for a generic x86-64),

each in a fresh process (the variables are read when the libraries start), and compares every
trained tensor with the first run's: equal bit for bit, or how far apart. A pin that changes
the model shows that machines whose CPUs lead that library to another choice train another
model from the same config and seed. With ``--evaluate`` each run is also scored on the probe
(``catneuron evaluate``), to see how far that moves the figures::

    python benchmarks/isa_dependence.py --data runs/demo/data --out \\
        benchmarks/results/isa_dependence.json
    python benchmarks/isa_dependence.py --data runs/demo/data --steps 0 --evaluate \\
        --contenders numba_generic,mkl_avx2,aten_default \\
        --out benchmarks/results/isa_dependence_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import cli, emit

from cluster.state_io import read_state

PINS = {"repeat": {}, "aten_default": {"ATEN_CPU_CAPABILITY": "default"},
        "mkl_compatible": {"MKL_CBWR": "COMPATIBLE"}, "mkl_avx2": {"MKL_CBWR": "AVX2"},
        "onednn_sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
        "numba_generic": {"NUMBA_CPU_NAME": "generic"}}
"""Each contender's environment on top of this process's (``repeat``: none, as the
reference)."""

FINGERPRINT = ("import json; from models.kernels.arithmetic import fingerprint; "
               "print(json.dumps(fingerprint()))")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a dataset folder (e.g. runs/demo/data)")
    p.add_argument("--config", default="demo", help="a shipped config's name or a TOML file")
    p.add_argument("--steps", type=int, default=40,
                   help="steps a stage; 0: the config's own [40]")
    p.add_argument("--evaluate", action="store_true",
                   help="also score each run on the probe (catneuron evaluate, in the same "
                        "environment) and record its headline figures")
    p.add_argument("--contenders", default=",".join(PINS),
                   help=f"which pinned runs, comma-separated [{','.join(PINS)}]")
    p.add_argument("--out", default=None, help="write the JSON result here too")
    return p.parse_args(argv)


def train(run: Path, args, env: dict[str, str]) -> dict:
    """One ``catneuron train`` in a fresh process with ``env`` added; its seconds and the
    arithmetic that process saw (:func:`models.kernels.arithmetic.fingerprint`)."""
    full = {**os.environ, **env}
    steps = ["--steps", str(args.steps)] if args.steps else []
    t0 = time.perf_counter()
    run_module(["jobs.train", "--config", args.config, *steps, "--run-dir", str(run),
                "--quiet", f"--data.path={args.data}"], full)
    out = {"env": env, "seconds": round(time.perf_counter() - t0, 1)}
    if args.evaluate:
        run_module(["jobs.evaluate", "--run", str(run), "--quiet"], full)
        out["probe"] = headline_figures(json.loads((run / "evaluation.json").read_text()))
    fp = subprocess.run([sys.executable, "-c", FINGERPRINT], env=full, capture_output=True,
                        text=True, check=True)
    return {**out, "arithmetic": json.loads(fp.stdout)}


def run_module(argv: list[str], env: dict[str, str]) -> None:
    """``python -m MODULE ARGS`` in ``env``; its last stderr line in the error if it fails."""
    done = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:]}")


def headline_figures(evaluation: dict) -> dict:
    """The best top-stage unit's held-out BA, spread, AUC and share of splits, and each
    baseline's held-out BA, from an ``evaluation.json``."""
    best = evaluation["best_neuron"]
    return {"unit": f"{best['layer']} #{best['index']}",
            "heldout_balanced_accuracy": round(best["heldout_balanced_accuracy"], 3),
            "heldout_balanced_accuracy_std": round(best["heldout_balanced_accuracy_std"], 3),
            "heldout_auc": round(best["heldout_auc"], 3),
            "top_share": best["stability"]["top_share"],
            "baselines": {name: round(score["heldout_balanced_accuracy"], 3)
                          for name, score in evaluation["baselines"].items()}}


def tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``RUN/model.pt`` by its path in the saved state."""
    out: dict[str, torch.Tensor] = {}

    def walk(path: str, x) -> None:
        if isinstance(x, torch.Tensor):
            out[path] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(f"{path}/{k}", v)
        elif isinstance(x, list | tuple):
            for i, v in enumerate(x):
                walk(f"{path}/{i}", v)

    walk("", read_state(run / "model.pt"))
    return out


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    """How many tensors differ, which, and the largest difference of any element."""
    differ = sorted(k for k in a if k not in b or not torch.equal(a[k], b[k]))
    worst = max((float((a[k].double() - b[k].double()).abs().max()) for k in differ
                 if k in b and a[k].shape == b[k].shape), default=0.0)
    return {"tensors": len(a), "differ": len(differ), "max_abs_diff": worst,
            "differing": differ}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PINS))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}: choose among {', '.join(PINS)}")
    with tempfile.TemporaryDirectory(prefix="isa_") as tmp:
        runs = {"first": train(Path(tmp) / "first", args, {})}
        first = tensors(Path(tmp) / "first")
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            runs[name] = train(Path(tmp) / name, args, PINS[name])
            runs[name]["against_first"] = compare(first, tensors(Path(tmp) / name))
    steps = f" --steps {args.steps}" if args.steps else ""
    scored = ", each scored by catneuron evaluate in the same environment" * args.evaluate
    emit({"what": f"catneuron train --config {args.config}{steps} on {args.data}, the "
                  "machine's own kernels, then each contender's library pinned lower: every "
                  f"trained tensor against the first run's{scored}",
          "runs": runs}, args.out)
    return 0


if __name__ == "__main__":
    cli(main)
