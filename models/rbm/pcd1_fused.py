"""PCD-1 with momentum-free SGD (scikit-learn's ``BernoulliRBM`` rule) in fused torch ops.

The buffers and step of :class:`models.rbm.fit_step.TorchPCD1`, the estimator's strategy for
mini-batches too large for its compiled loop (:mod:`models.kernels.estimator`) and on GPUs. It
has the same arithmetic and random stream as ``compute_update`` + ``apply_update`` (equal to
float rounding) in 15 tensor ops on reused buffers. The rows ``[v0; vk]`` and ``[p0; pk]``
share buffers, so that ``W += lr (p0^T v0 / n0 - pk^T vk / nk)`` is one ``addmm_`` and each
bias one ``addmv_``. The general path's separate gradient tensors and optimiser pass cost more
at GEMM-bound sizes.

Tieleman (2008), "Training restricted Boltzmann machines using approximations to the likelihood
gradient", ICML.
"""

from __future__ import annotations

import torch

from models.kernels import counter_rng
from models.rbm.dense import BernoulliRBM


class FusedPCD1:
    """Buffers for one RBM at one batch size; :meth:`step` updates the RBM in place.

    Build a new one when :meth:`fits` is False (another batch size, chain count, learning rate,
    dtype, device or parameter tensor).
    """

    def __init__(self, rbm: BernoulliRBM, n0: int) -> None:
        self.rbm, self.key = rbm, self._key(rbm, n0)
        W = rbm.params["W"]  # (n_hidden, n_visible)
        nk = rbm.chain_h.shape[0]
        kw = dict(device=W.device, dtype=W.dtype)
        lr = float(rbm.update_config.learning_rate)
        self.scale = torch.cat([torch.full((n0,), lr / n0, **kw),  # data rows
                                torch.full((nk,), -lr / nk, **kw)])  # chain rows
        self.col = self.scale.unsqueeze(1)  # (n0 + nk, 1)
        self.ones = torch.ones(n0 + nk, **kw)
        self.V = torch.empty(n0 + nk, W.shape[1], **kw)  # [v0; vk]
        self.H = torch.empty(n0 + nk, W.shape[0], **kw)  # [p0; pk]
        self.v0, self.vk, self.p0, self.pk = self.V[:n0], self.V[n0:], self.H[:n0], self.H[n0:]
        self.Vt, self.Ht, self.Wt = self.V.t(), self.H.t(), W.t()
        self.Uv = torch.empty(nk, W.shape[1], **kw)  # uniforms of the visible sample
        self.Uh = torch.empty(nk, W.shape[0], **kw)  # uniforms of the chains' hidden sample

    @staticmethod
    def _key(rbm: BernoulliRBM, n0: int) -> tuple:
        W = rbm.params["W"]
        return (id(rbm), n0, rbm.chain_h.shape[0], W.dtype, W.device, W.data_ptr(),
                float(rbm.update_config.learning_rate))

    def fits(self, rbm: BernoulliRBM, n0: int) -> bool:
        """Whether these buffers serve ``rbm`` at ``n0`` data rows."""
        return self._key(rbm, n0) == self.key

    def step(self, v: torch.Tensor) -> None:
        """One PCD-1 update from the mini-batch ``v`` (n0, n_visible); advances the chains."""
        rbm = self.rbm
        W, b, c = rbm.params["W"], rbm.params["b"], rbm.params["c"]
        chain, g = rbm.chain_h, rbm.generator  # chain (nk, n_hidden), updated in place
        self.v0.copy_(v)
        torch.addmm(c, self.v0, self.Wt, out=self.p0).sigmoid_()  # P(h | v0)
        torch.addmm(b, chain, W, out=self.vk).sigmoid_()  # P(v | h_chain)
        counter_rng.bernoulli_(self.vk, self.vk, g, u=self.Uv)  # the stream of bernoulli_sample
        torch.addmm(c, self.vk, self.Wt, out=self.pk).sigmoid_()  # P(h | vk)
        counter_rng.bernoulli_(chain, self.pk, g, u=self.Uh)
        self.H.mul_(self.col)  # rows scaled by lr / n0 and -lr / nk
        W.addmm_(self.Ht, self.V)
        c.addmv_(self.Ht, self.ones)
        b.addmv_(self.Vt, self.scale)
