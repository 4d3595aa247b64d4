"""A tied stage: one filter bank shared by every position (a convolution), then pooling.

Learners (``StageConfig.learner``):

- ``"rbm"``: a Gaussian-visible convolutional RBM (:class:`models.rbm.conv.ConvRBM`, Lee et al.
  2009) on the stage's input maps. Its gradient sums over the P positions; the stage divides it
  by P (:class:`PerPositionConvRBM`), so one learning rate suits every map size, as for an untied
  RBM. A unit's response is the filter's correlation with the input, ``(W_k / |W_k|) * v``.
- ``"kmeans"``: Coates & Ng (2011)'s recipe. Every patch ``p`` (C r r values) is normalised to
  zero mean and unit variance (floor ``PATCH_VAR_EPS``) and ZCA-whitened (``Z``, ``mu``, fitted
  by :meth:`TiedStage.prepare` with ``eps = whiten_eps``); spherical k-means learns unit
  directions ``u_k``; the response is ``u_k . Z (p - mu)``, one convolution with the whitening
  folded into the filters (:meth:`TiedStage.filters`).

Layer (:meth:`TiedStage.maps`): ``"pooled"``, the responses (N, K, Ph, Pw) (``sign_split``:
``relu(x)`` and ``relu(-x)`` as 2K maps) pooled by ``pool_kind`` over ``pool x pool`` windows:
the stage's units and its output. (The responses themselves are one filter at every position:
:meth:`TiedStage.responses`.) The filters run on inputs of any size, which is
what lets a pyramid stage above read the frame at several sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.competitive.kmeans_learner import KMeansLearner
from models.competitive.whitening import Whitening
from models.kernels.box_mean import box_mean
from models.kernels.split_pool import split_pool
from models.pooling import pool
from models.rbm.conv import ConvRBM
from models.stages.buffers import EncodesNothing, loaded_buffers
from models.stages.config import StageConfig
from models.stages.windows import random_windows

PATCH_VAR_EPS = 1e-3  # per-patch variance floor, in squared input units (pixels in [0, 1])
WHITEN_PATCHES = 50_000  # patches the ZCA is fitted on


class PerPositionConvRBM(ConvRBM):
    """ConvRBM whose update is divided by the number of positions of the batch's maps (a
    per-position learning rate); the sparsity term, added before, keeps its per-map scale."""

    def compute_update(self, v: Tensor, *, generator: torch.Generator | None = None
                       ) -> dict[str, Tensor]:
        update = super().compute_update(v, generator=generator)
        P = (((v.shape[2] - self.field) // self.stride + 1)
             * ((v.shape[3] - self.field) // self.stride + 1))
        return {k: u / P for k, u in update.items()}


def normalise_patches(p: Tensor) -> Tensor:
    """Each row (a patch) to zero mean and unit variance (floor ``PATCH_VAR_EPS``)."""
    centred = p - p.mean(1, keepdim=True)  # two passes: torch's var is slow on short rows
    return centred.div_((centred.square().mean(1, keepdim=True) + PATCH_VAR_EPS).sqrt_())


class TiedStage(EncodesNothing):
    """Tied filters (``n_maps`` of ``field x field``, step ``stride``) -> [sign split] -> pool."""

    layers: tuple[str, ...] = ("pooled",)
    output_layer = "pooled"

    def __init__(self, config: StageConfig, in_shape: tuple[int, int, int], *, update,
                 generator, device, dtype) -> None:
        self.config = config
        C, r, K = in_shape[0], config.field, config.n_maps
        self.needs_data = config.learner == "kmeans"
        if config.learner == "kmeans":
            self.learner = KMeansLearner(C * r * r, K, config=config.rbm_config(), update=update,
                                         generator=generator, device=device, dtype=dtype)
        else:
            self.learner = PerPositionConvRBM(C, r, K, stride=config.stride, visible="gaussian",
                                              config=config.rbm_config(), update=update,
                                              generator=generator, device=device, dtype=dtype)
        D = C * r * r
        self.zca = {"matrix": torch.eye(D, device=device, dtype=dtype),
                    "mean": torch.zeros(D, device=device, dtype=dtype)}

    def filters(self) -> tuple[Tensor, Tensor]:
        """Convolution weights (K, C, r, r) and bias (K,) of the responses."""
        W = self.learner.params["W"]
        if self.config.learner == "rbm":
            return W / W.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1), None
        U = self.learner.unit_weights() @ self.zca["matrix"]  # (K, D)
        return U.reshape(len(U), -1, self.config.field, self.config.field), -(U @ self.zca["mean"])

    def responses(self, v: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, K, Ph, Pw) unit responses (differentiable in ``v``)."""
        weight, bias = self.filters()
        r, s = self.config.field, self.config.stride
        if self.config.learner == "rbm":
            return F.conv2d(v, weight, stride=s)
        mean = F.avg_pool2d(v.mean(1, keepdim=True), r, s)  # each patch's mean and variance
        var = (F.avg_pool2d(v.square().mean(1, keepdim=True), r, s) - mean.square()).clamp(min=0)
        centred = F.conv2d(v, weight, stride=s) - mean * weight.sum((1, 2, 3)).view(1, -1, 1, 1)
        return centred / (var + PATCH_VAR_EPS).sqrt() + bias.view(1, -1, 1, 1)

    def differentiable_maps(self, v: Tensor) -> dict[str, Tensor]:
        """``{"pooled": pooled [sign-split] responses}``."""
        st = self.config
        h = self.responses(v)
        if not st.sign_split:
            return {"pooled": pool(h, st.pool, st.pool_stride, st.pool_kind)}
        # pooling is per map: pool each half, then join the (smaller) pooled maps
        halves = (h.clamp(min=0), (-h).clamp(min=0))
        return {"pooled": torch.cat([pool(x, st.pool, st.pool_stride, st.pool_kind)
                                     for x in halves], 1)}

    @torch.no_grad()
    def maps(self, v: Tensor) -> dict[str, Tensor]:
        """:meth:`differentiable_maps` without gradients, in one pass over the convolution's
        output (:func:`models.kernels.split_pool.split_pool`: the patch normalisation, sign
        split and pooling fused): the same values up to float rounding."""
        st = self.config
        return {"pooled": split_pool(*self._response_parts(v), st.pool, st.pool_stride,
                                     st.pool_kind, st.sign_split)}

    def _response_parts(self, v: Tensor) -> tuple[Tensor, ...]:
        """:meth:`responses` as ``h = s y + c a + b``: the convolution ``y`` (N, K, H', W'),
        per position ``s = 1 / sqrt(var + eps)`` and ``c = mean s`` (N, 1, H', W') of each
        patch, per map ``a = -sum(W_k)`` and the bias ``b`` (K,); an RBM's ``h`` is ``y``
        (the rest None)."""
        weight, bias = self.filters()
        r, stride = self.config.field, self.config.stride
        y = F.conv2d(v, weight, stride=stride)
        if self.config.learner == "rbm":
            return y, None, None, None, None
        mean = box_mean(v.mean(1, keepdim=True), r, stride)  # F.avg_pool2d's floats, faster
        scale = (box_mean(v.square().mean(1, keepdim=True), r, stride).sub_(mean.square())
                 .clamp_(min=0).add_(PATCH_VAR_EPS).rsqrt_())
        return y, scale, mean.mul_(scale), weight.sum((1, 2, 3)).neg(), bias

    @torch.no_grad()
    def rows(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """What the learner trains on: the maps (RBM), or ``rows_per_frame`` random patches per
        input, normalised and whitened (k-means): (N rows_per_frame, C r r)."""
        if self.config.learner == "rbm":
            return v
        st = self.config
        p = random_windows(v, st.field, st.stride, st.rows_per_frame,
                           generator or self.learner.generator)
        return (normalise_patches(p) - self.zca["mean"]) @ self.zca["matrix"].T

    @torch.no_grad()
    def prepare(self, v: Tensor, weights: str, generator: torch.Generator) -> None:
        """Fit the k-means learner's ZCA on patches of ``v``; then ``"exemplar"``: every unit
        starts at a (whitened) patch of ``v``; ``"random"``: at its random initial weights."""
        st = self.config
        per = max(1, -(-WHITEN_PATCHES // len(v)))
        p = random_windows(v, st.field, st.stride, per, generator)
        if st.learner == "kmeans":
            zca = Whitening(p.shape[1], kind="zca", eps=st.whiten_eps).fit(normalise_patches(p))
            self.zca = {"matrix": zca.matrix_, "mean": zca.mean_}
            if weights == "exemplar":
                self.learner.init_from_data(self.rows(v))
        elif weights == "exemplar":
            pick = p[torch.randperm(len(p), generator=generator)[: st.n_maps]]
            self.learner.params["W"].copy_((pick - pick.mean(1, keepdim=True))
                                           .reshape(self.learner.params["W"].shape))

    def state_dict(self) -> dict:
        """The learner's state and the whitening."""
        return {"learner": self.learner.state_dict(), "zca": dict(self.zca)}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (shapes must match)."""
        self.zca = loaded_buffers(self.zca, state["zca"])
        self.learner.load_state_dict(state["learner"])
