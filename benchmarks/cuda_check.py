"""CUDA path check: the same models give the same numbers on the GPU as on the CPU.

Builds each model on the CPU, copies its parameters to CUDA, and compares the deterministic
quantities (free energy, P(h|v), P(v|h), reconstruction error, stack features) in
float64; then trains a LocalRBM on the GPU for a few hundred CD-1 steps and checks that the
reconstruction error falls (by at least 5 %). Writes JSON (stdout or ``--out``); exits 1 if
any check fails.

Usage (on a machine with a GPU)::

    python benchmarks/cuda_check.py --out cuda-check.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from results_file import cli, emit

from models import BernoulliRBM, GaussianBernoulliRBM, LocalRBM, RBMStack, StackConfig


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().cpu() - b.detach().cpu()).abs().max())


def check_models(device: str) -> dict:
    """CPU vs CUDA on the deterministic parts of each model (float64)."""
    dt = torch.float64
    g = torch.Generator().manual_seed(0)
    out = {}
    cases = {
        "bernoulli_dense": lambda d: BernoulliRBM(64, 32, device=d, dtype=dt),
        "gaussian_dense": lambda d: GaussianBernoulliRBM(64, 32, device=d, dtype=dt),
        "local": lambda d: LocalRBM((2, 16, 16), 6, 2, 4, device=d, dtype=dt),
    }
    for name, make in cases.items():
        cpu = make("cpu")  # the local RBM runs its CPU backend (numba where installed)
        for t in cpu.params.values():
            t.add_(torch.randn(t.shape, generator=g, dtype=dt) * 0.1)
        gpu = make(device)  # built on the GPU: the torch backend, a CUDA generator
        for k, t in cpu.params.items():
            gpu.params[k] = t.to(device)
        shape = (32, *cpu.in_shape) if name == "local" else (32, cpu.params["W"].shape[1])
        v = torch.rand(shape, generator=g, dtype=dt)
        h = cpu.mean_hiddens(v)
        out[name] = {
            "free_energy": _max_abs(cpu.free_energy(v), gpu.free_energy(v.to(device))),
            "mean_hiddens": _max_abs(h, gpu.mean_hiddens(v.to(device))),
            "mean_visibles": _max_abs(cpu.mean_visibles(h), gpu.mean_visibles(h.to(device))),
            "reconstruction_error": abs(
                float(cpu.reconstruction_error(v)) - float(gpu.reconstruction_error(v.to(device)))
            ),
        }
        upd = gpu.compute_update(v.to(device))
        out[name]["update_finite"] = all(bool(torch.isfinite(u).all()) for u in upd.values())
        out[name]["update_on_device"] = all(u.device.type == "cuda" for u in upd.values())
    return out


def check_stack(device: str) -> dict:
    """Stack features on CPU vs CUDA for the same parameters."""
    cfg = StackConfig.from_dict(
        {
            "input_size": 32,
            "channels": 1,
            "stages": [
                {"field": 8, "stride": 2, "n_maps": 4, "pool": 3, "pool_stride": 1,
                 "visible": "gaussian"},
                {"field": 4, "stride": 2, "n_maps": 4, "pool": 2, "pool_stride": 1,
                 "visible": "gaussian"},
            ],
        }
    )
    cpu = RBMStack(cfg, device="cpu", dtype=torch.float64)
    gpu = RBMStack(cfg, device=device, dtype=torch.float64)
    gpu.load_state_dict(cpu.state_dict())
    frames = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    return {
        f"layer{k}": _max_abs(cpu.transform(frames, k), gpu.transform(frames.to(device), k))
        for k in range(len(cfg.stages))
    }


def check_training(device: str) -> dict:
    """A LocalRBM trained on the GPU lowers its reconstruction error on structured data."""
    g = torch.Generator(device=device).manual_seed(0)
    rbm = LocalRBM((1, 32, 32), 8, 4, 8, device=device, generator=g)
    # Structured binary data: random horizontal/vertical bars.
    gen = torch.Generator().manual_seed(1)
    rows = torch.rand(512, 1, 32, 1, generator=gen) < 0.2
    cols = torch.rand(512, 1, 1, 32, generator=gen) < 0.2
    data = (rows | cols).float().to(device)
    before = float(rbm.reconstruction_error(data))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 300
    for i in range(steps):
        batch = data[(i * 64) % 512 : (i * 64) % 512 + 64]
        rbm.apply_update(rbm.compute_update(batch))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    after = float(rbm.reconstruction_error(data))
    return {"recon_before": before, "recon_after": after, "steps": steps,
            "steps_per_s": steps / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_check: no CUDA device visible to torch", file=sys.stderr)
        return 1
    result = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "models": check_models(args.device),
        "stack_max_abs_diff": check_stack(args.device),
        "training": check_training(args.device),
    }
    tol = 1e-9
    ok = all(
        (v <= tol if isinstance(v, float) else v)
        for case in result["models"].values()
        for v in case.values()
    )
    ok &= all(v <= 1e-8 for v in result["stack_max_abs_diff"].values())
    # Learning, not a quality bar: the error must fall by at least 5 % in 300 CD-1 steps.
    ok &= result["training"]["recon_after"] < 0.95 * result["training"]["recon_before"]
    result["ok"] = bool(ok)
    emit(result, args.out, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(cli(main))
