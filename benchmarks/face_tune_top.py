"""Tune the demo's top stage on the matched probe's TUNING part only (faces 50-74 and twins).

Takes a trained run (its stage 0 is kept), caches stage 0's maps of the run's training frames at
every pyramid size once, then for each variant refits stage 1 the way the trainer does
(``RBMStack.prepare`` on 1,000 frames: whitening, exemplar start) and trains it in one process
for ``steps`` batches of 64 frames (one learner, the same update rule as the parameter server;
the variant's momentum, no weight decay), and scores the best top-stage unit held out on the
tuning part (20 grouped splits). The reporting part is never read.

    python benchmarks/face_tune_top.py --run /tmp/run --data /tmp/data \\
        '{"learner": "rbm", "learning_rate": 0.1, "steps": 600}' \\
        '{"learner": "kmeans", "learning_rate": 0.05, "steps": 600}'

Each variant is a JSON object: StageConfig fields of stage 1 (``learner``, ``learning_rate``,
``rows_per_frame``, ``sizes``, ``n_maps``, ``dims``, ``field``, ``whiten_eps``) plus ``steps``,
``mom`` (momentum, 0.9) and ``seed``. Prints one JSON line per variant, and appends it to
``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_file import cli  # noqa: E402

from cluster.state_io import read_trained_stack  # noqa: E402
from jobs.report.evaluation import headline, unit_tables  # noqa: E402
from models.neurons.selectivity import best_unit_score, stratified_halves  # noqa: E402
from models.rbm.optim import UpdateConfig  # noqa: E402
from models.stack import RBMStack, StackConfig  # noqa: E402
from pipeline.decode import DecodeConfig  # noqa: E402
from pipeline.probe import builtin_probe  # noqa: E402
from pipeline.reader import list_shards, read_frames  # noqa: E402

FIELDS = ("learner", "learning_rate", "rows_per_frame", "sizes", "n_maps", "dims", "field",
          "whiten_eps")


def variant_stack(trained: RBMStack, v: dict) -> RBMStack:
    """The run's stack with stage 1 replaced by the variant's (stage 0 kept)."""
    cfg = trained.config.to_dict()
    cfg["stages"][1].update({k: v[k] for k in FIELDS if k in v})
    st = cfg["stages"][1]
    update = UpdateConfig(learning_rate=st["learning_rate"] or 0.01,
                          momentum=v.get("mom", 0.9), initial_momentum=0.5,
                          momentum_switch_step=100, weight_decay=0.0)
    stack = RBMStack(StackConfig.from_dict(cfg), update=update, device="cpu",
                     generator=torch.Generator().manual_seed(v.get("seed", 0)))
    stack.stages[0].load_state_dict(trained.stages[0].state_dict())
    return stack


def cached_levels(stack: RBMStack, frames: torch.Tensor) -> list[torch.Tensor]:
    """Stage 0's maps of every frame at every size of stage 1 (float16)."""
    parts = None
    for i in range(0, len(frames), 100):
        levels = stack.reads(frames[i : i + 100], 1)
        parts = parts or [[] for _ in levels]
        for j, lv in enumerate(levels):
            parts[j].append(lv.half())
    return [torch.cat(p) for p in parts]


def train_variant(stack: RBMStack, levels: list[torch.Tensor], v: dict) -> None:
    """Prepare stage 1 on 1,000 frames, then ``steps`` updates of 64 random frames each."""
    seed = v.get("seed", 0)
    n = len(levels[0])
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:1000]
    stack.stages[1].prepare([lv[pick].float() for lv in levels], "exemplar",
                            torch.Generator().manual_seed(seed))
    rbm, g = stack.rbms[1], torch.Generator().manual_seed(seed + 1)
    for _ in range(v["steps"]):
        idx = torch.randint(n, (64,), generator=g)
        rows = stack.stages[1].rows([lv[idx].float() for lv in levels], g)
        rbm.apply_update(rbm.compute_update(rows, generator=g))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a trained run (its stage 0 is kept)")
    p.add_argument("--data", required=True, help="its dataset (last shard held out)")
    p.add_argument("--out", type=Path, help="append the JSON lines here as well "
                                            "(benchmarks/results/face_tune/top_stage.jsonl)")
    p.add_argument("variants", nargs="+", help="JSON objects (see the module docstring)")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    trained, _ = read_trained_stack(Path(a.run) / "model.pt")
    frames = torch.from_numpy(read_frames(a.data, shards=list_shards(a.data)[:-1]))
    probe = builtin_probe(DecodeConfig(input_size=64, channels=1)).part("tune")
    keep, y, _ = headline(probe, "faces")
    splits = stratified_halves(y, 20, 0, probe.groups[keep])
    cache: dict[tuple, list[torch.Tensor]] = {}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    for text in a.variants:
        v = json.loads(text)
        stack = variant_stack(trained, v)
        sizes = tuple(stack.config.stages[1].sizes)
        if sizes not in cache:
            cache = {sizes: cached_levels(stack, frames)}
        t0 = time.time()
        train_variant(stack, cache[sizes], v)
        tab = unit_tables(stack, probe.images, layers=("pooled",))["1/pooled"]
        s = best_unit_score(tab[keep], y, splits=splits)["score"]
        row = {**v, "run": str(a.run), "part": "tune", "train_s": round(time.time() - t0),
               "tune_heldout_balanced_accuracy": round(s["heldout_balanced_accuracy"], 4),
               "tune_heldout_auc": round(s["heldout_auc"], 4), "unit": s["index"],
               "polarity": s["polarity"], "chosen_share": s["heldout_chosen_fraction"]}
        print(json.dumps(row), flush=True)
        if a.out:
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
