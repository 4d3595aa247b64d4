"""Does a tied L1, a pyramid-pooled L2 and a large competitive top stage learn a face unit?

Measured on the matched twin probe (benchmarks/learner_data.py): held-out balanced accuracy and
AUC of the best top-stage unit (chosen with its threshold on faces 50-74 and their twins,
reported on 75-99, polarity +1), for each L1 learner (spherical k-means, ConvRBM, random) and
each top stage (spherical k-means, the one-of-K SoftmaxRBM, random weights, exemplar windows),
against the best pixel, image statistics, the best L1 unit and the mean-face template.

Usage::

    python benchmarks/learner_study.py --frames 4500 --seeds 0 1 2 --l1 kmeans rbm \
        --out-dir benchmarks/results/learner_study

prints the result (configuration, seeds, every figure); with ``--out-dir
benchmarks/results/learner_study`` it also writes ``<name>.json`` there after every run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learner_data import make_data  # noqa: E402
from learner_features import (  # noqa: E402
    L1,
    L2Windows,
    learn_l1_kmeans,
    learn_l1_rbm,
    random_l1,
    sample_windows,
    unit_responses,
)
from learner_scoring import held_out, logistic_held_out, stability  # noqa: E402
from results_file import cli, emit  # noqa: E402

from models.competitive.spherical_kmeans import SphericalKMeans, normalise_rows  # noqa: E402
from models.rbm.dense import RBMConfig  # noqa: E402
from models.rbm.optim import UpdateConfig  # noqa: E402
from models.rbm.softmax import SoftmaxRBM  # noqa: E402

L1_LEARNERS = {"kmeans": learn_l1_kmeans, "rbm": learn_l1_rbm, "random": None}


def image_statistics(images: torch.Tensor) -> np.ndarray:
    """Mean, standard deviation, gradient energy, Laplacian variance per image: (N, 4)."""
    x = images[:, None]
    gy, gx = x[:, :, 1:, :-1] - x[:, :, :-1, :-1], x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    lap = F.conv2d(x, torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]))
    stats = [x.mean((1, 2, 3)), x.std((1, 2, 3)), (gx.square() + gy.square()).mean((1, 2, 3)),
             lap.var((1, 2, 3))]
    return torch.stack(stats, 1).numpy()


def mean_face_template(images: torch.Tensor, face: torch.Tensor) -> np.ndarray:
    """Reference: normalised cross-correlation with the mean training face, max over positions
    and the sizes 25, 30, 35, 40: (N, 1)."""
    x = images[:, None].double()
    best = torch.full((len(images),), -1.0, dtype=torch.float64)
    for side in (25, 30, 35, 40):
        t = F.interpolate(face[None, None].double(), size=(side, side), mode="bilinear",
                          antialias=True, align_corners=False)
        t = (t - t.mean()) / t.std()
        n = side * side
        mean = F.avg_pool2d(x, side, 1)
        sd = (F.avg_pool2d(x.square(), side, 1) - mean.square()).clamp(min=1e-8).sqrt()
        ncc = F.conv2d(x, t) / (n * sd)  # sum of t is 0, so the mean drops out
        best = torch.maximum(best, ncc.amax((1, 2, 3)))
    return best[:, None].numpy()


def linear_filters(images: torch.Tensor, frames: torch.Tensor, n: int = 1000) -> np.ndarray:
    """Responses to ``n`` whole-frame linear filters cut from training frames (each frame minus
    its mean, unit length): (N, n)."""
    g = torch.Generator().manual_seed(0)
    f = frames[torch.randperm(len(frames), generator=g)[:n]].flatten(1)
    f = normalise_rows(f - f.mean(1, keepdim=True))
    x = images.flatten(1)
    return ((x - x.mean(1, keepdim=True)) @ f.T).numpy()


def baselines(data: dict) -> dict:
    """The data's own baselines (same protocol) and the template reference."""
    probe = data["probe"]
    imgs = probe["images"]
    stats = image_statistics(imgs)
    return {
        "best_pixel": held_out(imgs.flatten(1).numpy(), probe),
        "image_statistics_units": held_out(stats, probe),
        "image_statistics_logistic": logistic_held_out(stats, probe),
        "best_linear_filter": held_out(linear_filters(imgs, data["frames"]), probe),
        "reference_mean_face_template": held_out(mean_face_template(imgs, data["mean_face"]),
                                                 probe),
    }


def train_softmax_rbm(windows: torch.Tensor, K: int, seed: int, epochs: int) -> SoftmaxRBM:
    """SoftmaxRBM on windows scaled to length sqrt(dims) (unit variance per value), seeded from
    data, CD-1 in batches of 256, learning rate 0.1 (chosen by learner_tune_top.py on the tuning
    half only)."""
    g = torch.Generator().manual_seed(seed)
    x = windows * windows.shape[1] ** 0.5
    rbm = SoftmaxRBM(x.shape[1], K, config=RBMConfig(k=1), device="cpu", generator=g,
                     update=UpdateConfig(learning_rate=0.1, momentum_switch_step=100,
                                         weight_decay=0.0))
    rbm.init_from_data(x)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(256):
            rbm.apply_update(rbm.compute_update(x[idx]))
    return rbm


def top_stages(windows: torch.Tensor, K: int, seed: int, rbm_epochs: int) -> dict:
    """Unit weights (K, dims) of each top stage, learned on training windows only."""
    g = torch.Generator().manual_seed(seed)
    dims = windows.shape[1]
    km = SphericalKMeans(K, generator=g).fit(windows, n_iter=20)
    rbm = train_softmax_rbm(windows, K, seed, rbm_epochs)
    pick = torch.randperm(len(windows), generator=g)[:K]
    usage = rbm.mean_hiddens(windows[:20000] * dims**0.5).argmax(1).bincount(minlength=K)
    return {
        "units": {
            "kmeans": km.centroids_,
            "softmax_rbm": rbm.params["W"].clone(),
            "random": normalise_rows(torch.randn(K, dims, generator=g)),
            "exemplars": normalise_rows(windows[pick]),
        },
        "softmax_rbm_states_used": int((usage > 0).sum()),
    }


def score_stage(r_probe: np.ndarray, r_train: np.ndarray, data: dict) -> dict:
    """Held-out figures of the best unit, its stability, and its top 100 training frames."""
    res = held_out(r_probe, data["probe"])
    res["stability"] = stability(r_probe, data["probe"])
    top = np.argsort(-r_train[:, res["unit"]])[:100]
    kinds = np.array(data["kinds"])
    res["corpus_top100_face_share"] = float((kinds[top] == "face").mean())
    return res


def l2_inputs(data: dict, l1_name: str, seed: int, args) -> tuple:
    """The L1 bank and the whitened L2 windows of the training frames and the probe (read from
    ``args.cache`` when it holds them for this L1 learner, seed and frame count)."""
    cache = None
    if args.cache:
        cache = Path(args.cache) / f"{l1_name}_seed{seed}_frames{args.frames}.pt"
        if cache.exists():
            saved = torch.load(cache, weights_only=True)  # tensors, lists and strings only
            return L1(saved["weight"], saved["bias"], saved["norm"]), saved["train"], saved["probe"]
    frames = data["frames"]
    fit = L1_LEARNERS[l1_name]
    l1 = random_l1(seed) if fit is None else fit(frames, seed)
    l2 = L2Windows(l1, sizes=tuple(args.sizes), window=args.window, dims=args.dims)
    l2.fit_whitening(frames, args.whiten_windows, seed)
    out = (l1, l2.whitened(frames), l2.whitened(data["probe"]["images"]))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"weight": l1.weight, "bias": l1.bias, "norm": l1.norm, "train": out[1],
                    "probe": out[2]}, cache)
    return out


def run_one(data: dict, l1_name: str, seed: int, args) -> dict:
    """One L1 learner, one seed: every top stage and the L1 units, scored."""
    t0 = time.time()
    l1, w_train, w_probe = l2_inputs(data, l1_name, seed, args)
    windows = sample_windows(w_train, args.train_windows, seed)
    stages = top_stages(windows, args.K, seed, args.rbm_epochs)
    out = {"l1": l1_name, "seed": seed, "stages": {},
           "softmax_rbm_states_used": stages["softmax_rbm_states_used"]}
    names, banks = zip(*stages["units"].items(), strict=True)
    r_probe = unit_responses(w_probe, torch.cat(banks)).numpy()
    r_train = unit_responses(w_train, torch.cat(banks)).numpy()
    for i, name in enumerate(names):
        cols = slice(i * args.K, (i + 1) * args.K)
        out["stages"][name] = score_stage(r_probe[:, cols], r_train[:, cols], data)
    l1_units = l1.maps(data["probe"]["images"][:, None]).amax((2, 3)).numpy()
    out["stages"]["l1_units"] = held_out(l1_units, data["probe"])
    out["seconds"] = time.time() - t0
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=900)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--l1", nargs="+", default=["kmeans"], choices=sorted(L1_LEARNERS))
    p.add_argument("--K", type=int, default=256)
    p.add_argument("--dims", type=int, default=128)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--sizes", type=int, nargs="+", default=[58, 48, 40])
    p.add_argument("--whiten-windows", type=int, default=12000)
    p.add_argument("--train-windows", type=int, default=100_000)
    p.add_argument("--rbm-epochs", type=int, default=10)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--out-dir", type=Path,
                   help="write the JSON into this folder (benchmarks/results/learner_study)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default=None, help="folder for the whitened windows (reruns)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = make_data(args.frames, args.data_seed)
    result = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "baselines": baselines(data), "runs": []}
    print(json.dumps(result["baselines"], indent=1), flush=True)
    for l1_name in args.l1:
        for seed in args.seeds:
            run = run_one(data, l1_name, seed, args)
            result["runs"].append(run)
            brief = {k: (round(v["balanced_accuracy"], 3), round(v["auc"], 3))
                     for k, v in run["stages"].items()}
            print(l1_name, seed, f"{run['seconds']:.0f}s", brief, flush=True)
            result["seconds"] = time.time() - t0
            if args.out_dir:  # after every run, so a cut-short study keeps what it measured
                write(result, args)
    if not args.out_dir:
        emit(result, None)


def write(result: dict, args: argparse.Namespace) -> None:
    """``--out-dir``/<name>.json, replaced atomically."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or f"frames{args.frames}_K{args.K}_{'-'.join(args.l1)}"
    path = args.out_dir / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    print("wrote", path, flush=True)


if __name__ == "__main__":
    sys.exit(cli(main))
