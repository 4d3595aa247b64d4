"""The torch backend of :class:`models.rbm.local.LocalRBM`: unfold + bmm + fold (the CUDA path).

With patches ``(P, N, D)`` from :meth:`LocalGeometry.patches`, both directions are one batched
matmul over positions (``bmm`` with the position as batch)::

    x_pk     = c_pk + W_pk . patch_p(v)                (P, N, K)
    E[v | h] = act(b + fold_p(h_p W_p))                (act = sigmoid or identity)

There is no Python loop over positions. The CD step is
:func:`models.rbm.cd.contrastive_divergence` over these conditionals; the patches of the data and
of the negative sample share one reused workspace ``(P, D, n0 + nk)`` (a fresh allocation per
pass would be mostly page faults), so the weight gradient is one bmm over both phases.

Parameters are passed to every call (``W (P, K, D)``, ``c (P, K)``, ``b (C, H, W)``), so the
backend holds only the geometry and its buffers.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from models.rbm.cd import CDSettings, CDStep, contrastive_divergence
from models.rbm.dense import bernoulli_sample
from models.rbm.local_geometry import LocalGeometry

Params = dict[str, Tensor]
Phase = tuple[Tensor, Tensor]  # (v (N, C, H, W), its patches (P, N, D))


class TorchLocal:
    """LocalRBM's conditionals and CD step in torch ops: the CUDA path and the reference."""

    def __init__(
        self,
        geometry: LocalGeometry,
        visible: Literal["bernoulli", "gaussian"],
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.geometry, self.visible = geometry, visible
        self.device, self.dtype = device, dtype
        self.workspace: Tensor | None = None  # patches of both phases (P, D, n0 + nk)
        self.coef: Tensor | None = None  # scaled hidden probabilities of both phases (P, n0+nk, K)

    # ------------------------------------------------------------------ conditionals
    def up(self, params: Params, v: Tensor, out: Tensor | None = None) -> tuple[Tensor, Phase]:
        """x_pk = c_pk + W_pk . patch_p(v) as (P, N, K), and (v, patches (P, N, D)).

        ``out`` (P, D, N) receives the patches (a slice of the workspace).
        """
        pv = self.geometry.patches(v, out)  # (P, N, D) view of (P, D, N)
        x = torch.baddbmm(params["c"].unsqueeze(2), params["W"], pv.transpose(1, 2))
        return x.transpose(1, 2), (v, pv)  # x: (P, N, K) view of (P, K, N)

    def visible_mean(self, params: Params, h: Tensor) -> Tensor:
        """E[v | h] = act(b + fold(h_p W_p)) from internal h (P, N, K): (N, C, H, W)."""
        y = torch.bmm(params["W"].transpose(1, 2), h.transpose(1, 2))  # (P, D, N)
        x = self.geometry.fold(y.transpose(1, 2), bias=params["b"])  # (N, C, H, W), batch-last
        return torch.sigmoid_(x) if self.visible == "bernoulli" else x

    def sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """Bernoulli(mean), or N(mean, 1) for Gaussian visibles."""
        if self.visible == "bernoulli":
            return bernoulli_sample(mean, generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise.add_(mean)

    def gradient(self, a0: Phase, p0: Tensor, ak: Phase, pk: Tensor) -> Params:
        """Per-position <h patch^T>_data - <h patch^T>_model; biases likewise (means over rows)."""
        (v0, pv0), (vk, pvk) = a0, ak
        n0, nk = pv0.shape[1], pvk.shape[1]
        ws = self.workspace
        if ws is not None and pv0.data_ptr() == ws.data_ptr() and nk + n0 == ws.shape[2]:
            # both phases in one bmm over the shared workspace: [p0 / n0, -pk / nk]^T [pv0; pvk]
            coef = self._coef_buffer(n0 + nk)  # (P, n0 + nk, K)
            torch.mul(p0, 1.0 / n0, out=coef[:, :n0])
            torch.mul(pk, -1.0 / nk, out=coef[:, n0:])
            dW = torch.bmm(coef.transpose(1, 2), ws.transpose(1, 2))  # (P, K, D)
            dc = coef.sum(1)  # (P, K) = mean(p0) - mean(pk)
        else:
            dW = torch.bmm(p0.transpose(1, 2), pv0).mul_(1.0 / n0)  # (P, K, D)
            dW.baddbmm_(pk.transpose(1, 2), pvk, alpha=-1.0 / nk)
            dc = p0.mean(1) - pk.mean(1)  # (P, K)
        # visible bias: batch means as matrix-vector products (contiguous reads; a strided sum
        # over the batch dimension is slower)
        flat0, flatk = v0.reshape(n0, -1), vk.reshape(nk, -1)  # (N, C*H*W)
        w0 = torch.full((n0,), 1.0 / n0, device=v0.device, dtype=v0.dtype)
        wk = torch.full((nk,), -1.0 / nk, device=v0.device, dtype=v0.dtype)
        db = torch.mv(flat0.t(), w0).addmv_(flatk.t(), wk).view(self.geometry.in_shape)
        return {"W": dW, "b": db, "c": dc}

    # ------------------------------------------------------------------ the backend interface
    def compute_update(
        self,
        params: Params,
        v0: Tensor,
        *,
        chain: Tensor | None,
        n_negative: int,
        cd: CDSettings,
        generator: torch.Generator,
    ) -> CDStep:
        """CD-k / PCD-k step of the batch ``v0`` (N, C, H, W); chains are internal (P, nk, K)."""
        return contrastive_divergence(
            _GibbsStep(self, params), v0, chain=chain, n_negative=n_negative, cd=cd,
            generator=generator,
        )

    def free_energy_hidden(self, params: Params, v: Tensor) -> Tensor:
        """The hidden part of the free energy, sum_pk softplus(x_pk): (N,)."""
        x, _ = self.up(params, v)
        return F.softplus(x).sum((0, 2))

    def mean_hiddens(self, params: Params, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        x, _ = self.up(params, v)
        return self.geometry.to_maps(torch.sigmoid_(x))

    def mean_visibles(self, params: Params, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        return self.visible_mean(params, self.geometry.to_internal(h)).contiguous()

    def reconstruction_error(self, params: Params, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        x, _ = self.up(params, v)
        recon = self.visible_mean(params, torch.sigmoid_(x))
        return (recon - v).square().mean()

    # ------------------------------------------------------------------ reused buffers
    def begin_step(self, rows: int) -> None:
        """Size the workspace for a step of ``rows`` = n0 + nk patch columns."""
        ws = self.workspace
        if ws is None or ws.shape[2] != rows or ws.dtype != self.dtype:
            P, D = self.geometry.n_positions, self.geometry.patch_size
            self.workspace = torch.empty(P, D, rows, device=self.device, dtype=self.dtype)

    def _coef_buffer(self, rows: int) -> Tensor:
        """Reused (P, rows, K) buffer for the scaled hidden probabilities of both phases."""
        buf = self.coef
        if buf is None or buf.shape[1] != rows or buf.dtype != self.dtype:
            P, K = self.geometry.n_positions, self.geometry.n_maps
            buf = torch.empty(P, rows, K, device=self.device, dtype=self.dtype)
            self.coef = buf
        return buf


class _GibbsStep:
    """The :class:`models.rbm.cd.GibbsOps` of one CD step: a TorchLocal and the step's params.

    The data's patches go to the workspace's first ``n0`` columns, the sample's to the rest.
    """

    def __init__(self, local: TorchLocal, params: Params) -> None:
        self.local, self.params = local, params
        self.n_data = 0

    def begin_step(self, n_data: int, n_negative: int) -> None:
        self.local.begin_step(n_data + n_negative)
        self.n_data = n_data

    def up(self, v: Tensor, slot: int) -> tuple[Tensor, Phase]:
        ws, n0 = self.local.workspace, self.n_data
        out = ws[:, :, :n0] if slot == 0 else ws[:, :, n0:]
        assert out.shape[2] == v.shape[0], "workspace sized for another batch"
        return self.local.up(self.params, v, out)

    def sample_hidden(self, p: Tensor, generator: torch.Generator) -> Tensor:
        return bernoulli_sample(p, generator)

    def visible_mean(self, h: Tensor) -> Tensor:
        return self.local.visible_mean(self.params, h)

    def sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        return self.local.sample_visible(mean, generator)

    def gradient(self, a0: Phase, p0: Tensor, ak: Phase, pk: Tensor) -> Params:
        return self.local.gradient(a0, p0, ak, pk)

    def hidden_batch_mean(self, p: Tensor) -> Tensor:
        """Mean over the batch dim of (P, N, K) -> (P, K)."""
        return p.mean(1)

    def resize_chain(self, h: Tensor, n: int) -> Tensor:
        """Repeat the batch dim (1) of internal h (P, N, K) to n chains."""
        idx = torch.arange(n, device=h.device) % h.shape[1]
        return h.index_select(1, idx)
