"""The competitive stage's whitening convolution, direct (``F.conv2d``) against its FFT form
(:class:`models.kernels.fft_conv.FFTConv2d`), at a config's level sizes.

For each level of the config's competitive stage (by default the demo's top stage: 64 maps read
at 4 frame sizes, 8 x 8 windows whitened to 192 values), a batch of ``--batch`` inputs (the batch
``catneuron evaluate`` runs) is convolved both ways; times are the best of ``--repeat`` calls.
The reference measured in the same run is the direct convolution itself, and the machine's
float32 matmul (256 x 4096 @ 4096 x 1024). Rates are the direct form's FLOP count (``2 P Q C r^2
d``) over each time, so the FFT form's rate is an effective one: what a direct convolution would
have to reach to match it. Also which form :class:`~models.kernels.fft_conv.WindowConv` picks
per level, and the largest difference between the two outputs relative to their largest value.

Usage::

    python benchmarks/fft_conv.py --out benchmarks/results/fft_conv.json
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rbm import best_time as _best_time  # noqa: E402
from results_file import cli, emit  # noqa: E402

from jobs.config import load  # noqa: E402
from models.kernels.fft_conv import FFTConv2d, WindowConv  # noqa: E402

CPU = torch.device("cpu")


def best_time(fn, repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` calls, after one warm-up call (``rbm.py``'s)."""
    return _best_time(fn, CPU, repeat=repeat, number=1)


def matmul_gflops(repeat: int) -> float:
    """float32 matmul (256 x 4096 @ 4096 x 1024), GFLOP/s."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(256, 4096, generator=g), torch.rand(4096, 1024, generator=g)
    return 2 * 256 * 4096 * 1024 / best_time(lambda: a @ b, repeat) / 1e9


def bench_level(C: int, H: int, W: int, d: int, r: int, stride: int, batch: int,
                repeat: int) -> dict:
    """Direct and FFT times of one level (``batch`` inputs (C, H, W), ``d`` kernels r x r)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, C, H, W, generator=g)
    w = torch.randn(d, C, r, r, generator=g) / (C * r * r) ** 0.5
    b = torch.randn(d, generator=g)
    fft = FFTConv2d(w, b, stride)
    direct = F.conv2d(x, w, b, stride=stride)
    err = float((fft(x) - direct).abs().max() / direct.abs().max())
    P, Q = direct.shape[2:]
    flops = 2 * batch * P * Q * C * r * r * d
    t_direct = best_time(lambda: F.conv2d(x, w, b, stride=stride), repeat)
    t_fft = best_time(lambda: fft(x), repeat)
    return {"input": [C, H, W], "outputs": [d, P, Q], "batch": batch,
            "direct_s": t_direct, "fft_s": t_fft, "speedup": t_direct / t_fft,
            "direct_gflops": flops / t_direct / 1e9,
            "fft_effective_gflops": flops / t_fft / 1e9,
            "window_conv_uses_fft": WindowConv(w, b, stride).uses_fft(x),
            "max_relative_difference": err}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--stage", type=int, default=None,
                   help="the competitive stage (default: the config's first)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the JSON here (also printed)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.config).model
    stage = args.stage
    if stage is None:
        stage = next((k for k, s in enumerate(model.stages) if s.kind == "competitive"), None)
    if stage is None or not 0 <= stage < len(model.stages) or \
            model.stages[stage].kind != "competitive":
        print(f"fft_conv.py: error: config {args.config!r} has no competitive stage "
              f"{'' if stage is None else stage}", file=sys.stderr)
        return 2
    st = model.stages[stage]
    levels = [bench_level(C, H, W, st.dims, st.field, st.stride, args.batch, args.repeat)
              for C, H, W in model.level_shapes(stage)]
    direct = sum(v["direct_s"] for v in levels)
    fft = sum(v["fft_s"] if v["window_conv_uses_fft"] else v["direct_s"] for v in levels)
    result = {
        "config": args.config, "stage": stage, "sizes": list(st.sizes or ()),
        "device": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_gflops": matmul_gflops(args.repeat),
        "levels": levels,
        "all_levels": {"direct_s": direct, "window_conv_s": fft, "speedup": direct / fft},
    }
    emit(result, args.out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
