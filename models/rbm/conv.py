"""Convolutional (tied-weight) RBM: one filter bank shared by every position (Lee et al. 2009).

Visible maps ``v (C, H, W)``; ``K`` filters ``W_k (C, r, r)`` slide over them with stride ``s``,
giving hidden maps ``h (K, Ph, Pw)`` with ``Ph = (H - r) // s + 1``. Each hidden map has one
bias ``c_k`` and each visible channel one bias ``b_c`` (shared over positions). The energy is the
dense RBM energy with the weight matrix that repeats ``W_k`` at every position::

    E(v, h) = -sum_c b_c sum_ij v_cij - sum_k c_k sum_yx h_kyx - sum_kyx h_kyx (W_k * v)_yx
            (+ sum v^2 / 2 instead of nothing for Gaussian visibles with unit variance)

    P(h_kyx = 1 | v) = sigmoid(c_k + (W_k * v)_yx)          (* = strided cross-correlation)
    E[v | h]         = act(b + sum_k W_k (*)^T h_k)           (conv_transpose2d; act = sigmoid
                                                              or identity)

So the gradient of a tied weight is the *sum over positions* of the untied gradients::

    dF/dW_kcij = -sum_yx h_kyx v_c,(ys+i),(xs+j)       (torch.nn.grad.conv2d_weight)

One conv2d up, one transposed convolution down (:mod:`models.kernels.transposed_conv`: a matrix
product and shifted adds on CPU, cuDNN's on CUDA) and one weight-gradient convolution. Training
(CD-k / PCD-k, sparsity) is :class:`models.rbm.dense.RBMBase`'s, split into
:meth:`compute_update` (a worker) and :meth:`apply_update` (a parameter server, elementwise
``models.rbm.optim``), so a shard that holds filters ``a:b`` applies exactly their slice.

Parameter layout: ``W (K, C, r, r)`` (a shard splits dim 0), ``c (K,)``, ``b (C,)``.

Reference: Lee, Grosse, Ranganath & Ng (2009), "Convolutional deep belief networks for scalable
unsupervised learning of hierarchical representations", ICML.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_weight

from models.kernels.transposed_conv import conv_transpose2d
from models.rbm.dense import RBMBase, RBMConfig, bernoulli_sample, visible_update
from models.rbm.optim import UpdateConfig


class ConvRBM(RBMBase):
    """RBM with tied (convolutional) weights; hidden tensors are maps (N, K, Ph, Pw).

    Parameters
    ----------
    in_channels : visible channels ``C``.
    field : filter side ``r``.
    n_maps : filters (hidden maps) ``K``.
    stride : step between positions ``s``.
    visible : ``"bernoulli"`` or ``"gaussian"`` (unit variance, for whitened or contrast-normalised
        input).
    config, update, generator, device, dtype : as for :class:`models.rbm.dense.BernoulliRBM`.

    The input size is free: any ``H, W >= field``.
    """

    def __init__(
        self,
        in_channels: int,
        field: int,
        n_maps: int,
        *,
        stride: int = 1,
        visible: Literal["bernoulli", "gaussian"] = "gaussian",
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if min(in_channels, field, n_maps, stride) < 1:
            raise ValueError(
                f"in_channels={in_channels}, field={field}, n_maps={n_maps} and stride={stride} "
                "must be >= 1"
            )
        update = visible_update(visible, update)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        self.visible = visible
        self.in_channels, self.field, self.n_maps, self.stride = in_channels, field, n_maps, stride
        kw = {"device": self.device, "dtype": dtype}
        W = torch.randn(n_maps, in_channels, field, field, generator=self.generator, **kw)
        self.params = {
            "W": W.mul_(self.config.init_std),  # (K, C, r, r)
            "b": torch.zeros(in_channels, **kw),  # (C,)
            "c": torch.zeros(n_maps, **kw),  # (K,)
        }
        self._size: tuple[int, int] | None = None  # visible size of the persistent chains

    # ----------------------------------------------------------------- model hooks
    def check_maps(self, v: Tensor) -> None:
        """Raise ValueError unless ``v`` is (N, C, H, W) with this model's C and H, W >= r."""
        if v.dim() != 4 or v.shape[1] != self.in_channels or min(v.shape[2:]) < self.field:
            raise ValueError(
                f"ConvRBM needs (N, {self.in_channels}, H, W) maps with H, W >= {self.field}, "
                f"got {tuple(v.shape)}"
            )

    def _hidden_input(self, v: Tensor) -> Tensor:
        """x_kyx = c_k + (W_k * v)_yx: (N, K, Ph, Pw)."""
        self.check_maps(v)
        return F.conv2d(v, self.params["W"], self.params["c"], stride=self.stride)

    def _up(self, v: Tensor, slot: int | None = None) -> tuple[Tensor, Tensor]:
        """(hidden input, v): the gradient needs the visible maps themselves."""
        return self._hidden_input(v), v

    def _visible_input(self, h: Tensor, size: tuple[int, int]) -> Tensor:
        """b_c + sum_k (W_k (*)^T h_k): (N, C, H, W), the overlapping fields summed.

        Rows/columns that no field covers (a strided or uneven grid) get only the bias.
        """
        x = conv_transpose2d(h, self.params["W"], self.stride, size)
        return x.add_(self.params["b"].view(1, -1, 1, 1))

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = act(b + sum_k W_k (*)^T h_k) at the size of the last data batch."""
        x = self._visible_input(h, self._size)
        return torch.sigmoid_(x) if self.visible == "bernoulli" else x

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """Bernoulli(mean), or N(mean, 1) for Gaussian visibles."""
        if self.visible == "bernoulli":
            return bernoulli_sample(mean, generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise.add_(mean)

    def _gradient(self, v0: Tensor, p0: Tensor, vk: Tensor, pk: Tensor) -> dict[str, Tensor]:
        """-dF/dtheta at the data minus at the model sample, summed over positions, mean over rows.

        dW_kcij = sum_yx p_kyx v_c,(ys+i),(xs+j) (a weight-gradient convolution), dc_k = sum_yx
        p_kyx, db_c = sum_ij v_cij (Bernoulli) or sum_ij (v_cij - b_c) (Gaussian).
        """
        n0, nk = v0.shape[0], vk.shape[0]
        shape, s = self.params["W"].shape, self.stride
        dW = conv2d_weight(v0, shape, p0, stride=s).mul_(1.0 / n0)
        dW.sub_(conv2d_weight(vk, shape, pk, stride=s), alpha=1.0 / nk)
        dc = p0.sum((2, 3)).mean(0) - pk.sum((2, 3)).mean(0)
        db = v0.sum((2, 3)).mean(0) - vk.sum((2, 3)).mean(0)
        if self.visible == "gaussian":  # the b_c terms of sum (v - b)^2 / 2 cancel per pixel
            pixels0, pixelsk = v0.shape[2] * v0.shape[3], vk.shape[2] * vk.shape[3]
            db.sub_(self.params["b"] * (pixels0 - pixelsk))
        return {"W": dW, "b": db, "c": dc}

    def _hidden_batch_mean(self, p: Tensor) -> Tensor:
        """Mean activity of each map over the batch and its positions: (K,)."""
        return p.mean((0, 2, 3))

    # ----------------------------------------------------------------- public API
    @torch.no_grad()
    def compute_update(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """CD-k / PCD-k update of a batch of maps (N, C, H, W), see
        :meth:`RBMBase.compute_update`. Persistent chains keep the first batch's map size."""
        v = self.as_input(v)
        self.check_maps(v)
        if self.chain_h is None:
            self._size = tuple(v.shape[2:])
        elif tuple(v.shape[2:]) != self._size:
            raise ValueError(
                f"persistent chains hold {self._size} maps; batch is {tuple(v.shape[2:])}"
            )
        return super().compute_update(v, generator=generator)

    @torch.no_grad()
    def mean_visibles(self, h: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw); ``size`` defaults to the
        smallest visible size that gives ``h``'s grid."""
        h = self.as_input(h)
        if size is None:
            size = tuple((n - 1) * self.stride + self.field for n in h.shape[2:])
        x = self._visible_input(h, size)
        return torch.sigmoid_(x) if self.visible == "bernoulli" else x

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        v = self.as_input(v)
        p = torch.sigmoid(self._hidden_input(v))
        return (self.mean_visibles(p, tuple(v.shape[2:])) - v).square().mean()

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -sum b_c v_cij (or sum (v - b_c)^2 / 2) - sum_kyx softplus(x_kyx); (N,)."""
        v = self.as_input(v)
        hidden = F.softplus(self._hidden_input(v)).sum((1, 2, 3))
        b = self.params["b"].view(1, -1, 1, 1)
        if self.visible == "bernoulli":
            return -(v * b).sum((1, 2, 3)) - hidden
        return 0.5 * (v - b).square().sum((1, 2, 3)) - hidden
