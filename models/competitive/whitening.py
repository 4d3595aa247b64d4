"""PCA / ZCA whitening to ``d`` dimensions, the step before a competitive stage (Coates & Ng
2012: k-means learns useful features only on whitened inputs).

With the training mean ``mu`` and the covariance's top ``d`` eigenpairs ``(lambda_i, u_i)``::

    pca:  y = diag(1 / sqrt(lambda + eps)) U^T (x - mu)        (d values)
    zca:  y = U diag(1 / sqrt(lambda + eps)) U^T (x - mu)      (D values, rank d)

so the whitened training data has identity covariance on the kept subspace (eps = 0).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


class Whitening:
    """A fitted linear whitening ``y = (x - mean_) @ matrix_.T``.

    Parameters
    ----------
    dims : eigen-directions kept ``d`` (the largest variances).
    kind : ``"pca"`` (output ``d`` values) or ``"zca"`` (output ``D`` values, rotated back).
    eps : added to every eigenvalue (regularises the weak directions).
    """

    def __init__(self, dims: int, *, kind: Literal["pca", "zca"] = "pca", eps: float = 0.0):
        if dims < 1:
            raise ValueError(f"dims={dims} must be >= 1")
        if kind not in ("pca", "zca"):
            raise ValueError(f"kind={kind!r} must be 'pca' or 'zca'")
        if eps < 0:
            raise ValueError(f"eps={eps} must be >= 0")
        self.dims, self.kind, self.eps = dims, kind, eps
        self.mean_: Tensor | None = None
        self.matrix_: Tensor | None = None  # (d, D) or (D, D)
        self.variances_: Tensor | None = None  # (d,) kept eigenvalues, largest first

    def fit(self, x: Tensor) -> Whitening:
        """Fit on rows ``x`` (N, D) (computed in float64); returns self."""
        if x.dim() != 2 or self.dims > x.shape[1] or x.shape[0] < 2:
            raise ValueError(
                f"Whitening(dims={self.dims}) needs (N >= 2, D >= dims) rows, got {tuple(x.shape)}"
            )
        x64 = x.double()
        mean = x64.mean(0)
        centred = x64 - mean
        cov = centred.T @ centred / (x.shape[0] - 1)  # (D, D)
        lam, U = torch.linalg.eigh(cov)  # ascending
        lam, U = lam.flip(0)[: self.dims].clamp(min=0), U.flip(1)[:, : self.dims]
        scale = (lam + self.eps).rsqrt()
        if not torch.isfinite(scale).all():
            raise ValueError("covariance is rank-deficient at these dims; pass eps > 0")
        matrix = scale[:, None] * U.T  # (d, D)
        if self.kind == "zca":
            matrix = U @ matrix  # (D, D)
        self.mean_ = mean.to(x.dtype)
        self.matrix_ = matrix.to(x.dtype)
        self.variances_ = lam.to(x.dtype)
        return self

    def transform(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, d) (pca) or (N, D) (zca)."""
        if self.matrix_ is None:
            raise RuntimeError("Whitening is not fitted; call fit(x) first")
        return (x - self.mean_.to(x)) @ self.matrix_.to(x).T

    def as_conv(self, channels: int, field: int) -> tuple[Tensor, Tensor]:
        """The whitening of flattened ``(channels, field, field)`` windows as conv2d weights
        ``(d, channels, field, field)`` and bias ``(d,)``: whitens every window of a map at once."""
        if self.matrix_ is None:
            raise RuntimeError("Whitening is not fitted; call fit(x) first")
        d, D = self.matrix_.shape
        if D != channels * field * field:
            raise ValueError(f"fitted on {D} values, not {channels}x{field}x{field} windows")
        weight = self.matrix_.reshape(d, channels, field, field)
        return weight, -(self.matrix_ @ self.mean_)
