"""The numba backend of :class:`models.rbm.local.LocalRBM`: fused CPU kernels, no patch matrices.

The kernels (:mod:`models.kernels.local`) read receptive fields straight from a batch-last image
``(C, H, W, N)`` and sample with the counter-based generator of :mod:`models.kernels.counter_rng`.
:class:`NumbaLocal` owns the buffers they write into (reused between steps: a fresh allocation
of the step's image and coefficients per step would be mostly page faults) and calls them with
named arguments. It draws other random numbers than the torch backend from the same generator;
the two agree for equal samples (tests/models/rbm/test_local_numba.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels import counter_rng
from models.kernels import local as kern

if TYPE_CHECKING:  # the backend serves a LocalRBM; importing it here would be circular
    from models.rbm.local import LocalRBM


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

    def __init__(self, rbm: LocalRBM) -> None:
        self.rbm = rbm
        self.buffers: StepBuffers | None = None

    # ------------------------------------------------------------------ kernel calls
    def _weights(self) -> dict:
        """Numpy views of W (P, K, D), c (P, K), b (C, H, W) (no copy)."""
        counter_rng.set_threads()  # numba's pool as wide as torch's: both share the cores
        p = self.rbm.params
        return {name: p[name].contiguous().numpy() for name in ("W", "c", "b")}

    def _up(self, img, lo: int, hi: int, out, *, scale: float = 1.0, mode: int = kern.RAW,
            key: int = 0, samples=None) -> None:
        """Hidden input (or its scaled sigmoid / sample) of columns ``lo:hi`` of ``img``."""
        rbm, w = self.rbm, self._weights()
        kern.up(img=img, lo=lo, hi=hi, W=w["W"], c=w["c"], grid_w=rbm.grid[1], s=rbm.stride,
                r=rbm.field, out=out, scale=out.dtype.type(scale), mode=mode, key=key,
                hs=out if samples is None else samples)

    def _down(self, hs, hlo: int, m: int, out, olo: int, *, mode: int, key: int = 0) -> None:
        """Visible input ``b + fold(h W)`` (or its mean / sample) of ``m`` columns."""
        rbm, w = self.rbm, self._weights()
        kern.down(hs=hs, hlo=hlo, m=m, W=w["W"], b=w["b"], grid_h=rbm.grid[0],
                  grid_w=rbm.grid[1], s=rbm.stride, r=rbm.field, out=out, olo=olo, mode=mode,
                  key=key)

    def _visible_mode(self) -> int:
        """The down kernel's epilogue for E[v | h]: sigmoid (Bernoulli) or none (Gaussian)."""
        return kern.MEAN if self.rbm.visible == "bernoulli" else kern.RAW

    def _hidden(self, img: Tensor, mode: int) -> Tensor:
        """Hidden input (RAW) or P(h=1|v) (MEAN) of a batch-last image: (P, K, N)."""
        rbm = self.rbm
        out = torch.empty(rbm.n_positions, rbm.n_maps, img.shape[3], dtype=rbm.dtype)
        self._up(img.numpy(), 0, img.shape[3], out.numpy(), mode=mode)
        return out

    def _visible(self, h: Tensor, mode: int) -> Tensor:
        """b + fold(h W) (RAW) or its sigmoid (MEAN) from h (P, K, N): (C, H, W, N)."""
        rbm = self.rbm
        N = h.shape[2]
        out = torch.empty(*rbm.in_shape, N, dtype=rbm.dtype)  # (C, H, W, N)
        self._down(h.numpy(), 0, N, out.numpy(), 0, mode=mode)
        return out

    def _batch_last(self, v: Tensor) -> Tensor:
        """(N, C, H, W) -> contiguous batch-last (C, H, W, N) (one small copy)."""
        self.rbm.check_maps(v)
        return v.detach().permute(1, 2, 3, 0).contiguous()

    # ------------------------------------------------------------------ the interface
    def free_energy_hidden(self, v: Tensor) -> Tensor:
        """sum_pk softplus(x_pk) per row, (N,)."""
        return F.softplus(self._hidden(self._batch_last(v), kern.RAW)).sum((0, 1))

    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        rbm = self.rbm
        p = self._hidden(self._batch_last(v), kern.MEAN)  # (P, K, N)
        Ph, Pw = rbm.grid
        return p.view(Ph, Pw, rbm.n_maps, -1).permute(3, 2, 0, 1)  # (N, K, Ph, Pw)

    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        rbm = self.rbm
        hk = h.permute(2, 3, 1, 0).reshape(rbm.n_positions, rbm.n_maps, -1)  # (P, K, N)
        out = self._visible(hk.contiguous(), self._visible_mode())  # (C, H, W, N)
        return out.permute(3, 0, 1, 2).contiguous()

    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        img = self._batch_last(v)  # (C, H, W, N)
        recon = self._visible(self._hidden(img, kern.MEAN), self._visible_mode())
        return (recon - img).square().mean()

    def _step_buffers(self, n0: int, nk: int) -> StepBuffers:
        """The step's buffers, reallocated only when the batch or chain size changes."""
        if self.buffers is None or not self.buffers.fits(n0, nk):
            rbm = self.rbm
            P, K, M = rbm.n_positions, rbm.n_maps, n0 + nk
            self.buffers = StepBuffers(img=torch.empty(*rbm.in_shape, M, dtype=rbm.dtype),
                                        coef=torch.empty(P, K, M, dtype=rbm.dtype),
                                        h=torch.empty(P, K, nk, dtype=rbm.dtype))
        return self.buffers

    def compute_update(self, v0: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        """CD-k / PCD-k update (the estimator and sparsity handling of
        :meth:`models.rbm.dense.RBMBase.compute_update`).

        Both phases share one batch-last image (data in columns ``:n0``, the negative sample in
        ``n0:``) and one coefficient array, so the gradient is a single pass over the fields.
        """
        rbm = self.rbm
        cfg = rbm.config
        rbm.check_maps(v0)
        n0 = v0.shape[0]
        nk = rbm.negative_rows(n0)
        M = n0 + nk
        buf = self._step_buffers(n0, nk)
        img, coef = buf.img.numpy(), buf.coef.numpy()
        P, K = rbm.n_positions, rbm.n_maps
        kern.load_batch(v=v0.detach().contiguous().numpy(), img=img)  # columns :n0 = v0
        # positive phase: coef[:, :, :n0] = P(h|v0) / n0, and h0 ~ P(h|v0) unless a chain runs
        if cfg.persistent and rbm.chain_h is not None:
            h_t = rbm.chain_h.transpose(1, 2).contiguous()  # (P, K, nk)
            self._up(img, 0, n0, coef, scale=1.0 / n0, mode=kern.MEAN)
        else:
            h_t = buf.h if not cfg.persistent else torch.empty(P, K, n0, dtype=rbm.dtype)
            self._up(img, 0, n0, coef, scale=1.0 / n0, mode=kern.SAMPLE,
                     key=counter_rng.draw_key(g), samples=h_t.numpy())
            if cfg.persistent and nk != n0:  # chains start from the first batch, rows repeated
                h_t = h_t.index_select(2, torch.arange(nk) % n0)
        vmode = kern.SAMPLE if rbm.visible == "bernoulli" else kern.GAUSS_SAMPLE
        for step in range(cfg.k):
            self._down(h_t.numpy(), 0, nk, img, n0, mode=vmode,
                       key=counter_rng.draw_key(g))  # v_k into columns n0:
            if cfg.persistent or step < cfg.k - 1:
                if cfg.persistent:
                    h_t = torch.empty(P, K, nk, dtype=rbm.dtype)  # the new chain state
                self._up(img, n0, M, coef, scale=-1.0 / nk, mode=kern.SAMPLE,
                         key=counter_rng.draw_key(g), samples=h_t.numpy())
            else:
                self._up(img, n0, M, coef, scale=-1.0 / nk, mode=kern.MEAN)
        if cfg.persistent:
            rbm.chain_h = h_t.transpose(1, 2)  # (P, nk, K) view, the torch path's shape
        return self._gradient(buf, n0)

    def _gradient(self, buf: StepBuffers, n0: int) -> dict[str, Tensor]:
        """dW, dc from the coefficients of both phases, db from the image's columns."""
        rbm = self.rbm
        P, K = rbm.n_positions, rbm.n_maps
        dW = torch.empty(P, K, rbm.patch_size, dtype=rbm.dtype)  # (P, K, D)
        dc = torch.empty(P, K, dtype=rbm.dtype)
        kern.gradient(img=buf.img.numpy(), coef=buf.coef.numpy(), grid_w=rbm.grid[1],
                      s=rbm.stride, r=rbm.field, dW=dW.numpy(), dc=dc.numpy())
        db = torch.empty(rbm.in_shape, dtype=rbm.dtype)  # (C, H, W)
        kern.visible_gradient(img=buf.img.numpy(), n0=n0, db=db.numpy())
        update = {"W": dW, "b": db, "c": dc}
        if rbm.config.sparsity_target is not None:  # coef holds p0 / n0: its sum is the mean
            rbm.add_sparsity(update, buf.coef[:, :, :n0].sum(2))  # (P, K)
        return update
