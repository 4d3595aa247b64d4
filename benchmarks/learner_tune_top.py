"""Choose the SoftmaxRBM top stage's training settings without touching the reporting half.

Reads the whitened windows that ``learner_study.py --cache DIR`` saved for one L1 learner and
seed, trains the top stage under each setting, and scores it by
:func:`learner_scoring.tuning_half_only` (choose and score within faces 50-74 and their twins)
and by the face share of its best unit's top 100 training frames. Spherical k-means is scored the
same way for reference.

Usage::

    python benchmarks/learner_tune_top.py --cache /tmp/learner_cache --frames 600 --seed 0 \
        --out-dir benchmarks/results/learner_study

prints the result, and writes it to ``--out-dir``/tune_top_<l1>_seed<seed>_frames<frames>.json
when given.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner_data import make_data  # noqa: E402
from learner_features import sample_windows, unit_responses  # noqa: E402
from learner_scoring import choose_unit, tuning_half_only  # noqa: E402
from results_file import cli, emit  # noqa: E402

from models.competitive.spherical_kmeans import SphericalKMeans  # noqa: E402
from models.rbm.dense import RBMConfig  # noqa: E402
from models.rbm.optim import UpdateConfig  # noqa: E402
from models.rbm.softmax import SoftmaxRBM  # noqa: E402


def train_rbm(windows, K, seed, lr, epochs, scale, k_steps):
    """SoftmaxRBM on windows scaled to length ``scale``, seeded from data, CD-k."""
    g = torch.Generator().manual_seed(seed)
    x = windows * scale
    rbm = SoftmaxRBM(x.shape[1], K, config=RBMConfig(k=k_steps), device="cpu", generator=g,
                     update=UpdateConfig(learning_rate=lr, momentum_switch_step=100,
                                         weight_decay=0.0))
    rbm.init_from_data(x)
    w0 = rbm.params["W"].clone()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(256):
            rbm.apply_update(rbm.compute_update(x[idx]))
    moved = float((rbm.params["W"] - w0).norm() / w0.norm())
    return rbm.params["W"].clone(), moved


def figures(units, w_probe, w_train, probe, kinds):
    """Tuning-half-only BA, and the top-100 face share of the unit chosen on the tuning half."""
    r = unit_responses(w_probe, units).numpy()
    tune = probe["tune"]
    unit, _ = choose_unit(r[tune], probe["label"][tune])
    rt = unit_responses(w_train, units[unit : unit + 1]).numpy()[:, 0]
    top = np.argsort(-rt)[:100]
    return {"tuning_half_ba": tuning_half_only(r, probe),
            "top100_face_share": float((kinds[top] == "face").mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--out-dir", type=Path,
                   help="write the JSON into this folder (benchmarks/results/learner_study)")
    p.add_argument("--l1", default="kmeans")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--K", type=int, default=256)
    p.add_argument("--lr", type=float, nargs="+", default=[0.01, 0.05])
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    p.add_argument("--scale", type=float, nargs="+", default=[1.0])
    p.add_argument("--cd-k", type=int, nargs="+", default=[1])
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    saved = torch.load(Path(args.cache) / f"{args.l1}_seed{args.seed}_frames{args.frames}.pt",
                       weights_only=True)
    data = make_data(args.frames, 0)
    probe, kinds = data["probe"], np.array(data["kinds"])
    w_train, w_probe = saved["train"], saved["probe"]
    windows = sample_windows(w_train, 100_000, args.seed)
    dims = windows.shape[1]
    km = SphericalKMeans(args.K, generator=torch.Generator().manual_seed(args.seed))
    rows = [{"stage": "kmeans", **figures(km.fit(windows, 20).centroids_, w_probe, w_train,
                                          probe, kinds)}]
    print(rows[-1], flush=True)
    for lr, epochs, scale, k in itertools.product(args.lr, args.epochs, args.scale, args.cd_k):
        t0 = time.time()
        W, moved = train_rbm(windows, args.K, args.seed, lr, epochs, scale * dims**0.5, k)
        rows.append({"stage": "softmax_rbm", "lr": lr, "epochs": epochs,
                     "length": scale * dims**0.5, "cd_k": k, "relative_change_of_W": moved,
                     **figures(W, w_probe, w_train, probe, kinds), "seconds": time.time() - t0})
        print(rows[-1], flush=True)
    name = f"tune_top_{args.l1}_seed{args.seed}_frames{args.frames}.json"
    emit({"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
          "rows": rows}, args.out_dir and args.out_dir / name)


if __name__ == "__main__":
    sys.exit(cli(main))
