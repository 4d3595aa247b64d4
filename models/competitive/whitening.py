"""PCA / ZCA whitening to ``d`` dimensions, the step before a competitive stage (Coates & Ng
2012: k-means learns useful features only on whitened inputs).

With the training mean ``mu`` and the covariance's top ``d`` eigenpairs ``(lambda_i, u_i)``::

    pca:  y = diag(1 / sqrt(lambda + eps)) U^T (x - mu)        (d values)
    zca:  y = U diag(1 / sqrt(lambda + eps)) U^T (x - mu)      (D values, rank d)

so the whitened training data has identity covariance on the kept subspace (eps = 0).
The eigenpairs come from the covariance (``method="exact"``, ``torch.linalg.eigh``) or, for wide
inputs where only a few hundred of thousands of directions are kept, from a randomized SVD of the
centred rows (``"randomized"``, Halko, Martinsson & Tropp 2011, ``torch.svd_lowrank`` with 16
extra directions and 4 power iterations). The randomized eigenpairs are approximate, so its
whitened covariance is only close to the identity, less close the slower the spectrum decays;
the exact method's is the identity to float rounding.
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
    method : ``"exact"`` or ``"randomized"`` (top ``dims`` only; for D in the thousands).
    generator_seed : seeds the randomized method's test matrix.
    """

    def __init__(
        self,
        dims: int,
        *,
        kind: Literal["pca", "zca"] = "pca",
        eps: float = 0.0,
        method: Literal["exact", "randomized"] = "exact",
        generator_seed: int = 0,
    ):
        if dims < 1:
            raise ValueError(f"dims={dims} must be >= 1")
        if kind not in ("pca", "zca"):
            raise ValueError(f"kind={kind!r} must be 'pca' or 'zca'")
        if eps < 0:
            raise ValueError(f"eps={eps} must be >= 0")
        if method not in ("exact", "randomized"):
            raise ValueError(f"method={method!r} must be 'exact' or 'randomized'")
        self.dims, self.kind, self.eps, self.method = dims, kind, eps, method
        self.generator_seed = generator_seed
        self.mean_: Tensor | None = None
        self.matrix_: Tensor | None = None  # (d, D) or (D, D)
        self.variances_: Tensor | None = None  # (d,) kept eigenvalues, largest first

    def fit(self, x: Tensor) -> Whitening:
        """Fit on rows ``x`` (N, D) (mean and exact eigenpairs in float64); returns self."""
        if x.dim() != 2 or self.dims > x.shape[1] or x.shape[0] < 2:
            raise ValueError(
                f"Whitening(dims={self.dims}) needs (N >= 2, D >= dims) rows, got {tuple(x.shape)}"
            )
        mean = x.double().mean(0)
        centred = x - mean.to(x.dtype)
        lam, U = self._top_eigenpairs(centred)  # (d,), (D, d), float64, largest first
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

    def _top_eigenpairs(self, centred: Tensor) -> tuple[Tensor, Tensor]:
        """The covariance's ``dims`` largest eigenvalues (descending) and eigenvectors (D, d)."""
        n, d = centred.shape[0], self.dims
        if self.method == "exact":
            c64 = centred.double()
            lam, U = torch.linalg.eigh(c64.T @ c64 / (n - 1))  # ascending
            return lam.flip(0)[:d].clamp(min=0), U.flip(1)[:, :d]
        state = torch.random.get_rng_state()
        torch.manual_seed(self.generator_seed)  # svd_lowrank draws from the global generator
        try:
            q = min(d + 16, *centred.shape)
            _, S, V = torch.svd_lowrank(centred, q=q, niter=4)
        finally:
            torch.random.set_rng_state(state)
        return (S[:d].double().square() / (n - 1)), V[:, :d].double()

    def with_eps(self, eps: float) -> Whitening:
        """The same fit with ``eps`` in place of this one's (no refit: the eigenpairs are
        kept); ``kind="pca"`` only. For a regulariser set relative to the fitted variances."""
        if self.matrix_ is None or self.kind != "pca":
            raise RuntimeError("with_eps needs a fitted pca Whitening")
        lam = self.variances_.double()
        rescale = ((lam + self.eps) / (lam + eps)).sqrt()  # (d,)
        out = Whitening(self.dims, kind="pca", eps=eps, method=self.method,
                        generator_seed=self.generator_seed)
        out.mean_, out.variances_ = self.mean_, self.variances_
        out.matrix_ = (rescale[:, None] * self.matrix_.double()).to(self.matrix_.dtype)
        return out

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
