"""The two-stage architecture measured by benchmarks/learner_study.py, built from models/ parts.

L1: ``n`` tied 7x7 filters over the grey frame (learned by spherical k-means on normalised,
whitened patches, by a convolutional RBM on contrast-normalised frames, or random), each
response split by sign into two maps (relu(x), relu(-x)), RMS-pooled 3x3 with stride 2.
L2: every 8x8 window of the L1 maps, at each size of an image pyramid (58, 48, 40 px), whitened
to 128 values (PCA fitted on training windows) and normalised to unit length; a top-stage unit
``k`` with weights ``u_k`` (unit length) responds with the cosine ``u_k . w`` and is pooled by
max over positions and sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.competitive.spherical_kmeans import SphericalKMeans, normalise_rows
from models.competitive.whitening import Whitening
from models.layers import local_contrast_normalize
from models.pooling import pool, pyramid
from models.rbm.conv import ConvRBM
from models.rbm.dense import RBMConfig
from models.rbm.optim import UpdateConfig

PATCH_VAR_EPS = 1e-3  # per-patch variance floor before dividing (pixels in [0, 1])


@dataclass
class L1:
    """A tied filter bank ``weight (n, 1, r, r)``, ``bias (n,)`` and its input normalisation:
    ``"patch"`` (each r x r patch to zero mean, unit variance: k-means' input) or ``"lcn"``
    (local contrast normalisation of the frame: the RBM's input)."""

    weight: Tensor
    bias: Tensor
    norm: str

    def responses(self, images: Tensor) -> Tensor:
        """(N, 1, H, W) -> (N, n, H - r + 1, W - r + 1) filter responses."""
        r = self.weight.shape[-1]
        if self.norm == "lcn":
            return F.conv2d(local_contrast_normalize(images, 2.0), self.weight, self.bias)
        mean = F.avg_pool2d(images, r, 1)  # per-patch mean and variance, as convolutions
        var = (F.avg_pool2d(images.square(), r, 1) - mean.square()).clamp(min=0)
        raw = F.conv2d(images, self.weight)
        centred = raw - mean * self.weight.sum((1, 2, 3)).view(1, -1, 1, 1)
        return centred / (var + PATCH_VAR_EPS).sqrt() + self.bias.view(1, -1, 1, 1)

    def maps(self, images: Tensor) -> Tensor:
        """Sign split and RMS pooling 3x3 stride 2: (N, 1, H, W) -> (N, 2n, h, w)."""
        x = self.responses(images)
        return pool(torch.cat([x.clamp(min=0), (-x).clamp(min=0)], 1), 3, 2, "rms")


def sample_patches(frames: Tensor, field: int, n: int, rng: np.random.Generator) -> Tensor:
    """``n`` random field x field patches of the frames (N, H, W), flattened: (n, field^2)."""
    N, H, W = frames.shape
    i = rng.integers(0, N, n)
    y, x = rng.integers(0, H - field + 1, n), rng.integers(0, W - field + 1, n)
    off = torch.arange(field)
    rows = torch.from_numpy(y)[:, None] + off  # (n, r)
    cols = torch.from_numpy(x)[:, None] + off
    return frames[torch.from_numpy(i)[:, None, None], rows[:, :, None], cols[:, None, :]].flatten(1)


def learn_l1_kmeans(frames: Tensor, seed: int, n_filters: int = 32, field: int = 7) -> L1:
    """Coates & Ng's recipe: normalise patches, ZCA-whiten (eps 0.1), spherical k-means; the
    whitening is folded into the filters, so ``u_k . Z (p - mu)`` is one convolution."""
    rng = np.random.default_rng(seed)
    p = sample_patches(frames, field, 50_000, rng)
    var = p.var(1, keepdim=True, correction=0)  # as the convolution computes it
    p = (p - p.mean(1, keepdim=True)) / (var + PATCH_VAR_EPS).sqrt()
    zca = Whitening(field * field, kind="zca", eps=0.1).fit(p)
    km = SphericalKMeans(n_filters, generator=torch.Generator().manual_seed(seed))
    km.fit(zca.transform(p), n_iter=20)
    D = km.centroids_  # (n, r*r)
    weight = (D @ zca.matrix_).reshape(n_filters, 1, field, field)
    bias = -(D @ zca.matrix_ @ zca.mean_)
    return L1(weight, bias, "patch")


def learn_l1_rbm(
    frames: Tensor, seed: int, n_filters: int = 32, field: int = 7, steps: int = 300
) -> L1:
    """A Gaussian-Bernoulli ConvRBM (CD-1, sparsity target 0.05) on contrast-normalised frames;
    its filters (without the hidden bias) are the bank.

    The tied gradient sums over the P positions, so each update is divided by P before it is
    applied (a per-position learning rate, as for an untied RBM; the sparsity cost is scaled
    by P to survive the division)."""
    g = torch.Generator().manual_seed(seed)
    x = local_contrast_normalize(frames[:, None], 2.0)
    P = (x.shape[2] - field + 1) * (x.shape[3] - field + 1)
    rbm = ConvRBM(
        1, field, n_filters, visible="gaussian", device="cpu", generator=g,
        config=RBMConfig(sparsity_target=0.05, sparsity_cost=0.5 * P),
        update=UpdateConfig(learning_rate=1e-3, momentum_switch_step=50),
    )
    for _ in range(steps):
        idx = torch.randint(len(x), (32,), generator=g)
        update = rbm.compute_update(x[idx])
        rbm.apply_update({k: v / P for k, v in update.items()})
    W = rbm.params["W"].clone()
    return L1(W / W.flatten(1).norm(dim=1).view(-1, 1, 1, 1), torch.zeros(n_filters), "lcn")


def random_l1(seed: int, n_filters: int = 32, field: int = 7) -> L1:
    """Zero-mean unit random filters on normalised patches: the 'random L1' control."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n_filters, field * field, generator=g)
    W = normalise_rows(W - W.mean(1, keepdim=True))
    return L1(W.reshape(n_filters, 1, field, field), torch.zeros(n_filters), "patch")


class L2Windows:
    """Windows of the L1 maps at each pyramid size, whitened and normalised, for many frames."""

    def __init__(self, l1: L1, sizes=(58, 48, 40), window: int = 8, dims: int = 128) -> None:
        self.l1, self.sizes, self.window, self.dims = l1, tuple(sizes), window, dims
        self.conv: tuple[Tensor, Tensor] | None = None

    def levels(self, frames: Tensor) -> list[Tensor]:
        """L1 maps of each pyramid level: [(N, 2n, h_i, w_i)]."""
        return [self.l1.maps(level) for level in pyramid(frames[:, None], self.sizes)]

    def fit_whitening(self, frames: Tensor, n_windows: int, seed: int, batch: int = 25) -> None:
        """PCA-whitening to ``dims`` values (eps = 0.1 x the mean kept variance), fitted on
        ``n_windows`` random windows of the frames at all sizes."""
        rng = np.random.default_rng(seed)
        per_batch = max(1, n_windows * batch // len(frames) // len(self.sizes))
        rows = []
        for start in range(0, len(frames), batch):
            for maps in self.levels(frames[start : start + batch]):
                cols = F.unfold(maps, self.window)  # (B, C*w*w, L)
                b, L = rng.integers(0, cols.shape[0], per_batch), rng.integers(0, cols.shape[2],
                                                                              per_batch)
                rows.append(cols[torch.from_numpy(b), :, torch.from_numpy(L)])
        x = torch.cat(rows)
        probe = Whitening(self.dims, method="randomized", generator_seed=seed).fit(x)
        w = Whitening(self.dims, eps=0.1 * float(probe.variances_.mean()), method="randomized",
                      generator_seed=seed).fit(x)
        self.conv = w.as_conv(x.shape[1] // self.window**2, self.window)

    def whitened(self, frames: Tensor, batch: int = 100) -> list[Tensor]:
        """Unit-length whitened windows at every position of every size:
        [(N, dims, h_i, w_i)] (float16 to keep thousands of frames in memory)."""
        out = [[] for _ in self.sizes]
        for start in range(0, len(frames), batch):
            for i, maps in enumerate(self.levels(frames[start : start + batch])):
                y = F.conv2d(maps, *self.conv)
                out[i].append((y / y.norm(dim=1, keepdim=True).clamp(min=1e-8)).half())
        return [torch.cat(o) for o in out]


def sample_windows(whitened: list[Tensor], n: int, seed: int) -> Tensor:
    """``n`` random whitened windows (rows, float32) drawn evenly from all frames and sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for maps in whitened:
        N, d, h, w = maps.shape
        k = n // len(whitened)
        i, y, x = rng.integers(0, N, k), rng.integers(0, h, k), rng.integers(0, w, k)
        rows.append(maps[torch.from_numpy(i), :, torch.from_numpy(y), torch.from_numpy(x)])
    return torch.cat(rows).float()


def unit_responses(whitened: list[Tensor], units: Tensor, batch: int = 100) -> Tensor:
    """Max over positions and sizes of ``units (K, dims) . window``: (N, K), one matmul per
    batch and size (stack several stages' units to score them in one pass)."""
    N = whitened[0].shape[0]
    best = torch.full((N, units.shape[0]), -float("inf"))
    u = units.float().T.contiguous()  # (d, K)
    for maps in whitened:
        for s in range(0, N, batch):
            m = maps[s : s + batch].float()  # (B, d, h, w)
            rows = m.flatten(2).transpose(1, 2)  # (B, h*w, d)
            r = (rows @ u).amax(1)  # (B, K)
            best[s : s + batch] = torch.maximum(best[s : s + batch], r)
    return best
