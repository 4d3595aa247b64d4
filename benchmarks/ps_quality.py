"""What the parameter-server settings do to learning: stage 0 of the demo trained per setting.

The throughput benchmark (``benchmarks/ps.py``) shows what push/fetch periods, delta pushes and
bfloat16 transfers save; this one shows what they cost in learning. For each setting it trains
stage 0 of a config (the demo's: 2 async workers, 2 shards, ``train.steps`` worker batches) with
the real trainer on a local Ray, then measures the reconstruction error (mean-field, the same
figure the workers log) on the held-out frames, which no worker trains on, and on the initial
model for reference. Every setting is a Downpour one, so the schedule is ``train.mode =
"async"`` whatever the config's (a synchronous step ignores the push and fetch periods, the
push kind and the wire type: every setting would train the same). One run per setting: async
runs are not bit-reproducible, and the error does not fall monotonically in 400 steps, so read
differences of a few hundredths as noise.

Usage (needs a dataset, e.g. ``catneuron ingest --demo --out runs/demo/data``)::

    python benchmarks/ps_quality.py --data runs/demo/data --out benchmarks/results/ps_quality.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from results_file import cli, emit

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one thread per process (see benchmarks/ps.py)

SETTINGS = {
    "period 1, float32": ["train.n_push=1", "train.n_fetch=1", 'train.transfer_dtype="float32"'],
    "period 1, bfloat16": ["train.n_push=1", "train.n_fetch=1",
                           'train.transfer_dtype="bfloat16"'],
    "period 4, bfloat16": ["train.n_push=4", "train.n_fetch=4",
                           'train.transfer_dtype="bfloat16"'],
    "period 1, delta": ["train.n_push=1", "train.n_fetch=1", 'train.push="delta"'],
    "period 4, delta, bfloat16": ["train.n_push=4", "train.n_fetch=4", 'train.push="delta"',
                                  'train.transfer_dtype="bfloat16"'],
    "period 4, average, bfloat16": ["train.n_push=4", "train.n_fetch=4", 'train.push="average"',
                                    'train.transfer_dtype="bfloat16"'],
    "period 8, average, bfloat16": ["train.n_push=8", "train.n_fetch=8", 'train.push="average"',
                                    'train.transfer_dtype="bfloat16"'],
    "period 1, average, bfloat16": ["train.n_push=1", "train.n_fetch=1", 'train.push="average"',
                                    'train.transfer_dtype="bfloat16"'],
}


def heldout_error(stack, data: str, holdout_frames: int) -> tuple[float, int]:
    """Mean-field reconstruction error of stage 0 on the held-out frames."""
    import torch

    from cluster.worker import split_holdout
    from pipeline.reader import read_frames

    _, held = split_holdout(data, holdout_frames)
    if not held:
        raise SystemExit(f"{data} has no held-out shard (data.holdout_frames > 0 and at least "
                         f"2 shards are needed)")
    x = torch.from_numpy(read_frames(data, shards=held, limit=holdout_frames))
    with torch.no_grad():
        return float(stack.rbms[0].reconstruction_error(stack.stage_input(x, 0))), len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--data", default="runs/demo/data", help="dataset folder (catneuron ingest)")
    p.add_argument("--setting", action="append", choices=sorted(SETTINGS),
                   help="train only these settings (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every setting (e.g. update.learning_rate=0.004)")
    p.add_argument("--out", help="write the JSON here as well as to stdout")
    args = p.parse_args(argv)

    import torch

    from cluster.trainer import Trainer
    from jobs.config import dumps, load
    from models.stack import RBMStack

    base = [f'data.path="{args.data}"', "train.stages=1", 'train.mode="async"', *args.set]
    config = load(args.config, base)
    initial = RBMStack(config.model, update=config.update,
                       generator=torch.Generator().manual_seed(config.train.seed), device="cpu")
    error, n_held = heldout_error(initial, args.data, config.data.holdout_frames)
    result = {"benchmark": "ps_quality", "config": args.config, "overrides": args.set,
              "mode": config.train.mode, "steps": config.train.steps,
              "n_workers": config.train.n_workers, "heldout_frames": n_held,
              "initial_model_heldout_recon_error": error, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.setting or SETTINGS):
            cfg = load(args.config, [*base, *SETTINGS[name], f'train.run_dir="{tmp}/{i}"'])
            t0 = time.perf_counter()
            try:
                summary = Trainer(cfg, dumps(cfg), echo=None).train()
            except FloatingPointError as exc:  # a shard's divergence check
                result["settings"][name] = {"overrides": SETTINGS[name], "diverged": str(exc)}
                continue
            stack = RBMStack.load(summary["model"], device="cpu")
            error, _ = heldout_error(stack, args.data, cfg.data.holdout_frames)
            result["settings"][name] = {
                "overrides": SETTINGS[name], "heldout_recon_error": error,
                "seconds": time.perf_counter() - t0,
                "last_logged": {k: v for k, v in summary["stages"][0].items()
                                if k in ("recon_error", "fe_gap", "staleness_mean")}}
            print(f"{name}: held-out reconstruction error {error:.4f}", file=sys.stderr)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
