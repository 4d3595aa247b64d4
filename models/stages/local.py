"""A local stage: an RBM with untied weights at every position, L2 pooling, contrast
normalisation (Le et al. 2012's stage, with an RBM in place of their autoencoder).

Layers (:meth:`LocalStage.maps`): ``"hidden"`` P(h = 1 | v) (N, K, Ph, Pw), ``"pooled"`` their L2
pooling, ``"pooled_lcn"`` after local contrast normalisation across maps: the stage's output.
A Bernoulli-visible stage first squashes its input by a logistic sigmoid into (0, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.layers import l2_pool, local_contrast_normalize
from models.rbm.local import LocalRBM
from models.stages.buffers import EncodesNothing
from models.stages.config import StageConfig


class LocalStage(EncodesNothing):
    """Untied local RBM -> L2 pool -> LCN, on inputs of shape ``in_shape`` (C, H, W)."""

    layers: tuple[str, ...] = ("hidden", "pooled", "pooled_lcn")
    output_layer = "pooled_lcn"
    needs_data = False

    def __init__(self, config: StageConfig, in_shape: tuple[int, int, int], *, update,
                 generator, device, dtype) -> None:
        self.config = config
        self.learner = LocalRBM(in_shape, config.field, config.stride, config.n_maps,
                                visible=config.visible, config=config.rbm_config(),
                                update=update, generator=generator, device=device, dtype=dtype)

    def visible_form(self, v: Tensor) -> Tensor:
        """Logistic squashing for a Bernoulli-visible stage; identity for Gaussian."""
        return torch.sigmoid(v) if self.config.visible == "bernoulli" else v

    def rows(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """What the RBM trains on: the input maps (N, C, H, W), in its visible form."""
        return self.visible_form(v)

    def _pool(self, hidden: Tensor) -> dict[str, Tensor]:
        st = self.config
        pooled = l2_pool(hidden, st.pool, st.pool_stride)
        return {"hidden": hidden, "pooled": pooled,
                "pooled_lcn": local_contrast_normalize(pooled, st.lcn_sigma)}

    @torch.no_grad()
    def maps(self, v: Tensor) -> dict[str, Tensor]:
        """Every layer, through the RBM's own (fused on CPU) up-pass."""
        return self._pool(self.learner.mean_hiddens(self.visible_form(v)))

    def differentiable_maps(self, v: Tensor) -> dict[str, Tensor]:
        """Every layer, in plain torch ops (gradients in ``v`` exist): ``F.unfold`` orders a
        patch's values (C, r, r) and positions row-major, as ``LocalRBM.patches`` does, so
        ``W (P, K, C r r)`` applies directly."""
        rbm, v = self.learner, self.visible_form(v)
        cols = F.unfold(v, rbm.field, stride=rbm.stride)  # (N, D, P)
        x = torch.einsum("pkd,ndp->npk", rbm.params["W"], cols) + rbm.params["c"]  # (N, P, K)
        Ph, Pw = rbm.grid
        hidden = torch.sigmoid(x).transpose(1, 2).reshape(v.shape[0], rbm.n_maps, Ph, Pw)
        return self._pool(hidden)

    @torch.no_grad()
    def prepare(self, v: Tensor, weights: str, generator: torch.Generator) -> None:
        """``"random"``: keep the initial weights. ``"exemplar"``: map ``k`` at position ``p``
        takes as weights the patch at ``p`` of one random input of ``v`` (zero-mean, then scaled
        and biased so that ``W.v + c`` has mean 0 and std 1 over ``v``): what training patches
        alone give, with the same fields and pooling."""
        if weights == "random":
            return
        rbm = self.learner
        pv = rbm.geometry.patches(self.visible_form(v)).contiguous()  # (P, N, D)
        src = torch.randint(pv.shape[1], (rbm.n_maps,), generator=generator)
        w = pv[:, src, :]  # (P, K, D): one input's patches per map
        w = w - w.mean(2, keepdim=True)
        pre = torch.bmm(pv, w.transpose(1, 2))  # (P, N, K)
        mu, sd = pre.mean(1), pre.std(1).clamp_min(1e-6)  # (P, K)
        rbm.params["W"].copy_(w / sd[:, :, None])
        rbm.params["c"].copy_(-mu / sd)

    def state_dict(self) -> dict:
        """The RBM's state (the stage has no other state)."""
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.learner.load_state_dict(state)
