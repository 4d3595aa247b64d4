"""Spherical k-means (Coates & Ng 2012, "Learning feature representations with k-means"; as used
for large unsupervised feature learning by Coates, Karpathy & Ng 2012).

Inputs are whitened and normalised to unit length; centroids ``D_k`` are unit vectors. One
iteration::

    s_n = argmax_k D_k . x_n                          (assignment: the most similar centroid)
    sums_k = sum_{n: s_n = k} (D_k . x_n) x_n,  counts_k = |{n: s_n = k}|
    D_k <- normalise(sums_k + D_k)                    (Coates & Ng's update, D damps it)

The per-unit ``sums`` and ``counts`` are additive over rows, so workers compute them on their
shards (:meth:`SphericalKMeans.statistics`) and a parameter server adds them and applies one step
(:meth:`SphericalKMeans.apply_statistics`). A centroid that won no input is moved to the input
the others explain worst, so every unit is used. A unit's response is its cosine similarity to the
input, ``D_k . x / |x|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalise_rows(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rows of ``x`` (N, D) scaled to unit length (zero rows stay ~0)."""
    return x / x.norm(dim=1, keepdim=True).clamp(min=eps)


class SphericalKMeans:
    """K unit centroids ``centroids_ (K, D)`` fitted by spherical k-means.

    Parameters
    ----------
    n_clusters : K.
    generator : seeds the initial centroids (random unit vectors).
    """

    def __init__(self, n_clusters: int, *, generator: torch.Generator | None = None) -> None:
        if n_clusters < 1:
            raise ValueError(f"n_clusters={n_clusters} must be >= 1")
        self.n_clusters = n_clusters
        self.generator = generator if generator is not None else torch.Generator()
        self.centroids_: Tensor | None = None

    def init(self, dim: int, dtype: torch.dtype = torch.float32) -> None:
        """Centroids drawn as normalised Gaussian vectors (Coates & Ng 2012)."""
        D = torch.randn(self.n_clusters, dim, generator=self.generator, dtype=dtype)
        self.centroids_ = normalise_rows(D)

    def statistics(self, x: Tensor) -> dict[str, Tensor]:
        """Per-unit ``sums (K, D)`` and ``counts (K,)`` of the rows ``x`` (N, D), normalised here:
        what one worker pushes to the parameter server."""
        if self.centroids_ is None:
            self.init(x.shape[1], x.dtype)
        x = normalise_rows(x)
        sim = x @ self.centroids_.T  # (N, K)
        best, idx = sim.max(1)
        onehot = F.one_hot(idx, self.n_clusters).to(x.dtype)  # (N, K)
        sums = (onehot * best[:, None]).T @ x  # (K, D)
        return {"sums": sums, "counts": onehot.sum(0)}

    def apply_statistics(self, stats: dict[str, Tensor], reseed_from: Tensor | None = None) -> None:
        """``D_k <- normalise(sums_k + D_k)``; empty clusters move to the rows of ``reseed_from``
        that the other centroids explain worst (lowest best cosine), one at a time."""
        D = normalise_rows(stats["sums"].to(self.centroids_) + self.centroids_)
        empty = torch.nonzero(stats["counts"] == 0).flatten()
        if reseed_from is not None and len(empty):
            rows = normalise_rows(reseed_from.to(D))
            keep = torch.ones(len(D), dtype=torch.bool, device=D.device)
            keep[empty] = False
            fit = (rows @ D[keep].T).max(1).values if keep.any() else rows[:, 0] * 0 - 1  # (N,)
            for k in empty.tolist():  # one at a time, so two seeds do not share a gap
                D[k] = rows[int(fit.argmin())]
                fit = torch.maximum(fit, rows @ D[k])
        self.centroids_ = D

    def fit(self, x: Tensor, n_iter: int = 10) -> SphericalKMeans:
        """``n_iter`` full passes over the rows ``x`` (N, D); returns self."""
        if x.dim() != 2 or x.shape[0] < 1:
            raise ValueError(f"fit needs rows (N, D), got {tuple(x.shape)}")
        if self.centroids_ is None:
            self.init(x.shape[1], x.dtype)
        for _ in range(n_iter):
            self.apply_statistics(self.statistics(x), reseed_from=x)
        return self

    def transform(self, x: Tensor) -> Tensor:
        """Cosine similarity of each row to each centroid: (N, K)."""
        if self.centroids_ is None:
            raise RuntimeError("SphericalKMeans is not fitted; call fit(x) first")
        return normalise_rows(x) @ self.centroids_.to(x).T
