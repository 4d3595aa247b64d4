"""The numba backend of :class:`models.rbm.local.LocalRBM`: fused CPU kernels, no patch matrices.

The kernels (:mod:`models.kernels.local`) read receptive fields straight from a batch-last image
``(C, H, W, N)`` and sample with the counter-based generator of :mod:`models.kernels.counter_rng`.
:class:`NumbaLocal` owns the buffers they write into (reused between steps: a fresh allocation
of the step's image and coefficients per step would be mostly page faults) and calls them with
named arguments. It receives the geometry once and the parameters, chains and CD settings with
each call.

Its CD step is the chain of :func:`models.rbm.cd.contrastive_divergence` fused into the kernels
(the sigmoid, the scaling by ``1 / n`` and the Bernoulli sample happen inside the pass that
computes the hidden input, and both phases share one image and one coefficient array): this
fusion is what makes the CPU path fast, so the chain is written out here a second time. It
draws other random numbers than the torch backend from the same generator; the two agree for
equal samples (tests/models/rbm/test_local_numba.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels import counter_rng
from models.kernels import local as kern
from models.rbm.cd import CDSettings, CDStep
from models.rbm.local_geometry import LocalGeometry

Params = dict[str, Tensor]


@dataclass
class StepBuffers:
    """Reused buffers of one CD step with ``n0`` data rows and ``nk`` chains."""

    img: Tensor  # (C, H, W, n0 + nk): the data in columns :n0, the negative sample after
    coef: Tensor  # (P, K, n0 + nk): [p0 / n0, -pk / nk]
    h: Tensor  # (P, K, nk): hidden samples of the chain

    def fits(self, n0: int, nk: int) -> bool:
        return self.img.shape[3] == n0 + nk and self.h.shape[2] == nk


class NumbaLocal:
    """LocalRBM's conditionals and CD step with the fused numba kernels (CPU, float32/64)."""

    def __init__(
        self,
        geometry: LocalGeometry,
        visible: Literal["bernoulli", "gaussian"],
        dtype: torch.dtype,
    ) -> None:
        self.geometry, self.visible, self.dtype = geometry, visible, dtype
        self.buffers: StepBuffers | None = None

    # ------------------------------------------------------------------ kernel calls
    @staticmethod
    def _weights(params: Params) -> dict:
        """Numpy views of W (P, K, D), c (P, K), b (C, H, W) (no copy)."""
        counter_rng.set_threads()  # numba's pool as wide as torch's: both share the cores
        return {name: params[name].contiguous().numpy() for name in ("W", "c", "b")}

    def _up(self, params: Params, img, lo: int, hi: int, out, *, scale: float = 1.0,
            mode: int = kern.RAW, key: int = 0, samples=None) -> None:
        """Hidden input (or its scaled sigmoid / sample) of columns ``lo:hi`` of ``img``."""
        geo, w = self.geometry, self._weights(params)
        kern.up(img=img, lo=lo, hi=hi, W=w["W"], c=w["c"], grid_w=geo.grid[1], s=geo.stride,
                r=geo.field, out=out, scale=out.dtype.type(scale), mode=mode, key=key,
                hs=out if samples is None else samples)

    def _down(self, params: Params, hs, hlo: int, m: int, out, olo: int, *, mode: int,
              key: int = 0) -> None:
        """Visible input ``b + fold(h W)`` (or its mean / sample) of ``m`` columns."""
        geo, w = self.geometry, self._weights(params)
        kern.down(hs=hs, hlo=hlo, m=m, W=w["W"], b=w["b"], grid_h=geo.grid[0],
                  grid_w=geo.grid[1], s=geo.stride, r=geo.field, out=out, olo=olo, mode=mode,
                  key=key)

    def _visible_mode(self) -> int:
        """The down kernel's epilogue for E[v | h]: sigmoid (Bernoulli) or none (Gaussian)."""
        return kern.MEAN if self.visible == "bernoulli" else kern.RAW

    def _hidden(self, params: Params, img: Tensor, mode: int) -> Tensor:
        """Hidden input (RAW) or P(h=1|v) (MEAN) of a batch-last image: (P, K, N)."""
        geo = self.geometry
        out = torch.empty(geo.n_positions, geo.n_maps, img.shape[3], dtype=self.dtype)
        self._up(params, img.numpy(), 0, img.shape[3], out.numpy(), mode=mode)
        return out

    def _visible(self, params: Params, h: Tensor, mode: int) -> Tensor:
        """b + fold(h W) (RAW) or its sigmoid (MEAN) from h (P, K, N): (C, H, W, N)."""
        N = h.shape[2]
        out = torch.empty(*self.geometry.in_shape, N, dtype=self.dtype)  # (C, H, W, N)
        self._down(params, h.numpy(), 0, N, out.numpy(), 0, mode=mode)
        return out

    def _batch_last(self, v: Tensor) -> Tensor:
        """(N, C, H, W) -> contiguous batch-last (C, H, W, N) (one small copy)."""
        self.geometry.check_maps(v)
        return v.detach().permute(1, 2, 3, 0).contiguous()

    # ------------------------------------------------------------------ the interface
    def free_energy_hidden(self, params: Params, v: Tensor) -> Tensor:
        """sum_pk softplus(x_pk) per row, (N,)."""
        return F.softplus(self._hidden(params, self._batch_last(v), kern.RAW)).sum((0, 1))

    def mean_hiddens(self, params: Params, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        geo = self.geometry
        p = self._hidden(params, self._batch_last(v), kern.MEAN)  # (P, K, N)
        Ph, Pw = geo.grid
        return p.view(Ph, Pw, geo.n_maps, -1).permute(3, 2, 0, 1)  # (N, K, Ph, Pw)

    def mean_visibles(self, params: Params, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        geo = self.geometry
        hk = h.permute(2, 3, 1, 0).reshape(geo.n_positions, geo.n_maps, -1)  # (P, K, N)
        out = self._visible(params, hk.contiguous(), self._visible_mode())  # (C, H, W, N)
        return out.permute(3, 0, 1, 2).contiguous()

    def reconstruction_error(self, params: Params, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        img = self._batch_last(v)  # (C, H, W, N)
        mode = self._visible_mode()
        recon = self._visible(params, self._hidden(params, img, kern.MEAN), mode)
        return (recon - img).square().mean()

    def _step_buffers(self, n0: int, nk: int) -> StepBuffers:
        """The step's buffers, reallocated only when the batch or chain size changes."""
        if self.buffers is None or not self.buffers.fits(n0, nk):
            geo = self.geometry
            P, K, M = geo.n_positions, geo.n_maps, n0 + nk
            self.buffers = StepBuffers(img=torch.empty(*geo.in_shape, M, dtype=self.dtype),
                                        coef=torch.empty(P, K, M, dtype=self.dtype),
                                        h=torch.empty(P, K, nk, dtype=self.dtype))
        return self.buffers

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
        """CD-k / PCD-k step of the batch ``v0`` (N, C, H, W); chains are (P, nk, K), the torch
        backend's layout.

        Both phases share one batch-last image (data in columns ``:n0``, the negative sample in
        ``n0:``) and one coefficient array, so the gradient is a single pass over the fields.
        """
        g = generator
        self.geometry.check_maps(v0)
        n0, nk = v0.shape[0], n_negative
        M = n0 + nk
        buf = self._step_buffers(n0, nk)
        img, coef = buf.img.numpy(), buf.coef.numpy()
        P, K = self.geometry.n_positions, self.geometry.n_maps
        kern.load_batch(v=v0.detach().contiguous().numpy(), img=img)  # columns :n0 = v0
        # positive phase: coef[:, :, :n0] = P(h|v0) / n0, and h0 ~ P(h|v0) unless a chain runs
        if cd.persistent and chain is not None:
            h_t = chain.transpose(1, 2).contiguous()  # (P, K, nk)
            self._up(params, img, 0, n0, coef, scale=1.0 / n0, mode=kern.MEAN)
        else:
            h_t = buf.h if not cd.persistent else torch.empty(P, K, n0, dtype=self.dtype)
            self._up(params, img, 0, n0, coef, scale=1.0 / n0, mode=kern.SAMPLE,
                     key=counter_rng.draw_key(g), samples=h_t.numpy())
            if cd.persistent and nk != n0:  # chains start from the first batch, rows repeated
                h_t = h_t.index_select(2, torch.arange(nk) % n0)
        vmode = kern.SAMPLE if self.visible == "bernoulli" else kern.GAUSS_SAMPLE
        for step in range(cd.k):
            self._down(params, h_t.numpy(), 0, nk, img, n0, mode=vmode,
                       key=counter_rng.draw_key(g))  # v_k into columns n0:
            if cd.persistent or step < cd.k - 1:
                if cd.persistent:
                    h_t = torch.empty(P, K, nk, dtype=self.dtype)  # the new chain state
                self._up(params, img, n0, M, coef, scale=-1.0 / nk, mode=kern.SAMPLE,
                         key=counter_rng.draw_key(g), samples=h_t.numpy())
            else:
                self._up(params, img, n0, M, coef, scale=-1.0 / nk, mode=kern.MEAN)
        # coef holds p0 / n0 in its first n0 columns: their sum is the batch mean of P(h|v0)
        mean_p0 = buf.coef[:, :, :n0].sum(2) if cd.sparsity_target is not None else None  # (P, K)
        return CDStep(
            update=self._gradient(buf, n0),
            chain=h_t.transpose(1, 2) if cd.persistent else None,  # (P, nk, K) view
            mean_p0=mean_p0,
        )

    def _gradient(self, buf: StepBuffers, n0: int) -> Params:
        """dW, dc from the coefficients of both phases, db from the image's columns."""
        geo = self.geometry
        P, K = geo.n_positions, geo.n_maps
        dW = torch.empty(P, K, geo.patch_size, dtype=self.dtype)  # (P, K, D)
        dc = torch.empty(P, K, dtype=self.dtype)
        kern.gradient(img=buf.img.numpy(), coef=buf.coef.numpy(), grid_w=geo.grid[1],
                      s=geo.stride, r=geo.field, dW=dW.numpy(), dc=dc.numpy())
        db = torch.empty(geo.in_shape, dtype=self.dtype)  # (C, H, W)
        kern.visible_gradient(img=buf.img.numpy(), n0=n0, db=db.numpy())
        return {"W": dW, "b": db, "c": dc}
