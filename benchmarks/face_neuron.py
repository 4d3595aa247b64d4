"""Search for a face-selective top-stage unit: train a stack in one process, score it held out.

Each run trains ``models.RBMStack`` stage by stage on the ingested demo frames (random batches,
the models' own update split, no Ray), then scores every unit of every stage (hidden
probabilities, pooled, pooled and normalised) on the **tuning** part of the built-in probe
(faces 50-74 against their matched twins; the reporting part, 75-99, is left for
``catneuron evaluate``) with ``models.neurons.selectivity`` (unit, polarity and threshold chosen
on one half, identities kept on one side, measured on the other), against the best raw pixel,
the same geometry with its random initial weights, and stage 0. One JSON per run, printed,
and in ``--out-dir`` (``benchmarks/results/face_neuron/``) when given, with the full settings,
wall time and machine load.

    python benchmarks/face_neuron.py --data /tmp/face/data --preset dense_top --seed 0
    python benchmarks/face_neuron.py --data /tmp/face/data --preset dense_top \
        --set '{"steps": 600, "stages": [{}, {"n_maps": 32}]}'

This is a fast search loop; the chosen setting is then confirmed through ``catneuron train``
(parameter-server workers) and ``catneuron evaluate``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_file import cli, emit  # noqa: E402

from jobs.report.evaluation import headline, unit_tables  # noqa: E402
from models.neurons.selectivity import best_unit_score  # noqa: E402
from models.rbm.optim import UpdateConfig  # noqa: E402
from models.stack import RBMStack, StackConfig  # noqa: E402
from pipeline.decode import DecodeConfig  # noqa: E402
from pipeline.probe import builtin_probe  # noqa: E402
from pipeline.reader import read_frames  # noqa: E402

STAGE0 = {"field": 10, "stride": 2, "n_maps": 8, "pool": 3, "pool_stride": 2, "lcn_sigma": 1.0,
          "visible": "gaussian", "sparsity_target": 0.05, "sparsity_cost": 0.1}
PRESETS = {
    "demo": {"stages": [STAGE0, {**STAGE0, "field": 5, "stride": 1, "pool_stride": 1}]},
    # stage 1 sees the whole 13x13x8 pooled map: one position, each unit a whole-frame detector
    "dense_top": {"stages": [STAGE0, {**STAGE0, "field": 13, "stride": 1, "n_maps": 32,
                                      "pool": 1, "pool_stride": 1}]},
}
BASE = {"input_size": 64, "input_lcn_sigma": 2.0, "steps": 400, "batch_size": 64,
        "update": {"learning_rate": 0.002, "momentum": 0.9, "initial_momentum": 0.5,
                   "momentum_switch_step": 100, "weight_decay": 0.0002}}


def merge(base: dict, over: dict) -> dict:
    """Recursive merge; lists of dicts merge element-wise (``{}`` keeps an element)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        elif isinstance(v, list) and isinstance(out.get(k), list) and all(
                isinstance(e, dict) for e in v):
            old = out[k]
            out[k] = [merge(old[i], e) if i < len(old) else e for i, e in enumerate(v)]
        else:
            out[k] = copy.deepcopy(v)
    return out


def build_stack(s: dict, seed: int) -> RBMStack:
    """The stack of settings ``s`` with its initial weights drawn from ``seed``."""
    cfg = StackConfig(input_size=s["input_size"], channels=1, stages=tuple(s["stages"]),
                      input_lcn_sigma=s["input_lcn_sigma"])
    return RBMStack(cfg, update=UpdateConfig(**s["update"]),
                    generator=torch.Generator().manual_seed(seed), device="cpu")


def train(stack: RBMStack, frames: np.ndarray, s: dict, seed: int) -> list[dict]:
    """Greedy in-process training; each stage's input is computed once for all frames."""
    g = torch.Generator().manual_seed(seed + 7)
    x = torch.from_numpy(frames)
    log = []
    for k, rbm in enumerate(stack.rbms):
        t0 = time.perf_counter()
        v_all = torch.cat([stack.stage_input(x[i:i + 512], k) for i in range(0, len(x), 512)])
        for _ in range(s["steps"]):
            idx = torch.randint(len(v_all), (s["batch_size"],), generator=g)
            rbm.apply_update(rbm.compute_update(v_all[idx]))
        h = rbm.mean_hiddens(v_all[:512])
        log.append({"stage": k, "seconds": round(time.perf_counter() - t0, 2),
                    "recon_error": float(rbm.reconstruction_error(v_all[:512])),
                    "mean_abs_W": float(rbm.params["W"].abs().mean()),
                    "mean_hidden": float(h.mean())})
    return log


def score(values: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """The contract's SCORE (held-out and whole-probe) of the best unit of ``values``."""
    r = best_unit_score(values, labels, n_splits=20, groups=groups)["score"]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


def tuning_probe(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, 0/1 labels and identity groups of the tuning part: faces and their twins."""
    probe = builtin_probe(DecodeConfig(input_size=size, channels=1)).part("tune")
    keep, labels, _ = headline(probe, "faces")
    return probe.images[keep], labels, probe.groups[keep]


def run(s: dict, data: str, seed: int) -> dict:
    """Train, score, and return the run's record."""
    frames = read_frames(data)
    probe, labels, groups = tuning_probe(s["input_size"])
    t0 = time.perf_counter()
    stack = build_stack(s, seed)
    tables_random = unit_tables(stack, probe)
    log = train(stack, frames, s, seed)
    wall = time.perf_counter() - t0
    tables = unit_tables(stack, probe)
    top = len(s["stages"]) - 1
    scores = {name: score(v, labels, groups) for name, v in tables.items()}
    pixels = probe.reshape(len(probe), -1).astype(np.float64)
    baselines = {"best_pixel": score(pixels, labels, groups),
                 "random_top_pooled": score(tables_random[f"{top}/pooled"], labels, groups),
                 "random_top_hidden": score(tables_random[f"{top}/hidden"], labels, groups),
                 "stage0_pooled": scores["0/pooled"], "stage0_hidden": scores["0/hidden"]}
    return {"settings": s, "seed": seed, "train_seconds": round(wall, 1),
            "loadavg_at_end": os.getloadavg(), "n_frames": int(len(frames)), "stages": log,
            "scores": scores, "baselines": baselines}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset folder from catneuron ingest --demo")
    p.add_argument("--preset", default="dense_top", choices=sorted(PRESETS))
    p.add_argument("--set", default="{}", help="JSON merged over the preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="result file stem (default: preset and seed)")
    p.add_argument("--out-dir", type=Path,
                   help="write the JSON into this folder (benchmarks/results/face_neuron)")
    a = p.parse_args(argv)
    s = merge(merge(BASE, PRESETS[a.preset]), json.loads(a.set))
    torch.set_num_threads(int(os.environ.get("FACE_THREADS", "2")))
    rec = run(s, a.data, a.seed)
    rec["preset"], rec["overrides"], rec["data"] = a.preset, json.loads(a.set), a.data
    corpus = Path(a.data) / "_videos" / "demo_corpus.json"
    if corpus.is_file():
        rec["corpus"] = json.loads(corpus.read_text()).get("args")
    name = a.name or f"{a.preset}_seed{a.seed}"
    emit(rec, a.out_dir and a.out_dir / f"{name}.json")
    top = len(s["stages"]) - 1
    print(name, "train", rec["train_seconds"], "s", [st["seconds"] for st in rec["stages"]])
    for k, v in {**rec["scores"], **rec["baselines"]}.items():
        print(f"  {k:20s} heldout BA {v['heldout_balanced_accuracy']:.3f} "
              f"AUC {v['heldout_auc']:.3f}  (whole BA {v['balanced_accuracy']:.3f})"
              + ("  <- top" if k.startswith(f"{top}/") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
