"""Locally connected RBM: untied weights per receptive-field position (Le et al. 2012).

Visible maps ``v (C, H, W)``; hidden units sit on a grid of ``Ph x Pw = P`` receptive-field
positions (field ``r x r``, stride ``s``: ``Ph = (H - r) // s + 1``), ``K`` maps per position.
Position ``p`` sees the patch ``v[:, y:y+r, x:x+r]`` flattened to ``D = C r r`` values and has its
own weights ``W[p] (K, D)`` and hidden biases ``c[p] (K,)``; the visible biases ``b (C, H, W)`` are
shared by all positions. The energy is the dense RBM energy with a weight matrix that is zero
outside each unit's field, so in P(v|h) overlapping fields *sum* into the visible input::

    P(h_pk = 1 | v) = sigmoid(c_pk + W_pk . patch_p(v))
    E[v | h]        = act(b + fold_p(h_p W_p))        (act = sigmoid or identity)

Both directions are one batched matmul over positions (``bmm`` with the position as batch) plus
an unfold (a strided copy) or a fold (the sum of overlapping patches: ``ceil(r/s)^2`` strided
adds, one per residue class of positions, whose fields are disjoint); there is no Python loop
over positions. Patches and images are kept batch-last in memory ((P, D, N), (C, H, W, N)) so
both copies move runs of N contiguous values. Internally hidden tensors are ``(P, N, K)``; the
public methods take and return hidden maps ``(N, K, Ph, Pw)``.

The backend is chosen once, when the model is built: :class:`TorchLocal` (the formulation
above: the CUDA path and the reference) or, on CPU, :class:`models.rbm.local_numba.NumbaLocal`
(fused numba kernels that read receptive fields straight from a batch-last image instead of
materialising the patch matrices). Both implement :class:`LocalBackend`.

Parameter layout (a parameter server shards ``W`` and ``c`` by position along dim 0):
``W (P, K, C r r)``, ``c (P, K)``, ``b (C, H, W)``.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels import local as local_kernels
from models.rbm.dense import RBMBase, RBMConfig, bernoulli_sample
from models.rbm.local_numba import NumbaLocal
from models.rbm.optim import UpdateConfig


def positions(size: int, field: int, stride: int) -> int:
    """Number of receptive-field positions along one side: (size - field) // stride + 1."""
    return (size - field) // stride + 1


class LocalBackend(Protocol):
    """What a LocalRBM backend computes (inputs already on the model's device and dtype)."""

    def compute_update(self, v: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        """CD-k / PCD-k update of the batch ``v`` (N, C, H, W)."""

    def free_energy_hidden(self, v: Tensor) -> Tensor:
        """The hidden part of the free energy, sum_pk softplus(x_pk): (N,)."""

    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""

    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""

    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""


class LocalRBM(RBMBase):
    """RBM with local receptive fields and untied weights per position.

    Parameters
    ----------
    in_shape : visible maps ``(C, H, W)``.
    field : receptive-field side ``r`` (pixels of the input maps).
    stride : step between neighbouring fields ``s``.
    n_maps : hidden units per position ``K``.
    visible : ``"bernoulli"`` (binary/probability visibles, sigmoid) or ``"gaussian"``
        (real visibles with unit variance, for contrast-normalised input).
    config, update, generator, device, dtype : as for :class:`models.rbm.dense.BernoulliRBM`.
    backend : ``"auto"`` (fused numba kernels on CPU when numba is installed, torch otherwise),
        ``"numba"`` (require them) or ``"torch"`` (unfold + bmm + fold, the CUDA path). The
        backends draw different random streams from the same generator; their updates agree
        for equal samples (tests/models/rbm/test_local_numba.py).

    References
    ----------
    Le, Ranzato, Monga, Devin, Chen, Corrado, Dean & Ng (2012), "Building high-level features
    using large scale unsupervised learning", ICML (local receptive fields, untied weights).
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        field: int,
        stride: int,
        n_maps: int,
        *,
        visible: Literal["bernoulli", "gaussian"] = "bernoulli",
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        backend: Literal["auto", "torch", "numba"] = "auto",
    ) -> None:
        C, H, W_ = (int(x) for x in in_shape)
        if min(C, H, W_) < 1:
            raise ValueError(f"in_shape={tuple(in_shape)} must be positive (C, H, W)")
        if field < 1 or field > min(H, W_):
            raise ValueError(f"field={field} must be in [1, {min(H, W_)}] for input {H}x{W_}")
        if stride < 1:
            raise ValueError(f"stride={stride} must be >= 1")
        if n_maps < 1:
            raise ValueError(f"n_maps={n_maps} must be >= 1")
        if visible not in ("bernoulli", "gaussian"):
            raise ValueError(f"visible={visible!r} must be 'bernoulli' or 'gaussian'")
        if backend not in ("auto", "torch", "numba"):
            raise ValueError(f"backend={backend!r} must be 'auto', 'torch' or 'numba'")
        if update is None and visible == "gaussian":
            update = UpdateConfig(learning_rate=0.001)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        numba_ok = (
            local_kernels.HAVE_NUMBA
            and self.device.type == "cpu"
            and dtype in (torch.float32, torch.float64)
        )
        if backend == "numba" and not numba_ok:
            raise ValueError(
                f"backend='numba' needs numba, a CPU device and float32/float64 "
                f"(numba installed: {local_kernels.HAVE_NUMBA}, device {self.device}, {dtype})"
            )
        self.backend = backend
        self.fused = numba_ok and backend != "torch"  # the numba kernels serve this model
        self.impl: LocalBackend = NumbaLocal(self) if self.fused else TorchLocal(self)
        # the torch path's reused buffers: patches of both phases (P, D, n0 + nk), the scaled
        # hidden probabilities (P, n0 + nk, K)
        self._ws: Tensor | None = None
        self._ws_split = 0
        self._coef: Tensor | None = None
        self.visible = visible
        self.in_shape = (C, H, W_)
        self.field, self.stride, self.n_maps = field, stride, n_maps
        self.grid = (positions(H, field, stride), positions(W_, field, stride))
        self.n_positions = self.grid[0] * self.grid[1]
        self.patch_size = C * field * field
        P, K, D = self.n_positions, n_maps, self.patch_size
        W = torch.randn(P, K, D, generator=self.generator, device=self.device, dtype=dtype)
        self.params = {
            "W": W.mul_(self.config.init_std),  # (P, K, C*r*r)
            "b": torch.zeros(C, H, W_, device=self.device, dtype=dtype),
            "c": torch.zeros(P, K, device=self.device, dtype=dtype),
        }

    @property
    def n_hidden(self) -> int:
        """Total hidden units P * K."""
        return self.n_positions * self.n_maps

    @property
    def n_visible(self) -> int:
        """Total visible units C * H * W."""
        C, H, W = self.in_shape
        return C * H * W

    # ------------------------------------------------------------- layout helpers
    def patches(self, v: Tensor, out: Tensor | None = None) -> Tensor:
        """unfold: (N, C, H, W) -> (P, N, C*r*r), one strided copy, positions row-major.

        The result is stored batch-last, ``(P, D, N)`` in memory, and returned as its
        transposed view (P, N, D): the copy then moves runs of N contiguous values instead of
        r, and the fold below can add whole groups of patches with the same layout.
        ``out`` (P, D, N) (a slice of a reused workspace) receives the copy instead of a fresh
        allocation.
        """
        N, C, H, W = v.shape
        if (C, H, W) != self.in_shape:
            raise ValueError(f"input maps {(C, H, W)} != LocalRBM in_shape {self.in_shape}")
        vt = v.permute(1, 2, 3, 0)  # (C, H, W, N)
        if not vt.is_contiguous():
            vt = vt.contiguous()  # one small copy of the image batch
        Ph, Pw = self.grid
        r, s = self.field, self.stride
        sc, sh, sw, _ = vt.stride()
        view = vt.as_strided(
            (Ph, Pw, C, r, r, N), (s * sh, s * sw, sc, sh, sw, 1)
        )  # (Ph, Pw, C, r, r, N), no copy
        if out is None:
            out = torch.empty(self.n_positions, self.patch_size, N, device=v.device, dtype=v.dtype)
        out.unflatten(1, (C, r, r)).unflatten(0, (Ph, Pw)).copy_(view)  # (Ph, Pw, C, r, r, N)
        return out.transpose(1, 2)  # (P, N, D) view of (P, D, N)

    def fold(self, patches: Tensor, bias: Tensor | None = None) -> Tensor:
        """fold: (P, N, C*r*r) -> (N, C, H, W), overlapping patches summed (plus ``bias``).

        With ``q = ceil(r / s)``, positions whose grid indices agree modulo ``q`` on both axes
        have disjoint fields, so each of the ``q^2`` residue groups is added at once into a
        strided view of a batch-last (C, H, W, N) image: no scatter, no col2im. The result is
        the (N, C, H, W) view of that buffer.
        """
        P, N, D = patches.shape
        C, H, W = self.in_shape
        Ph, Pw = self.grid
        r, s = self.field, self.stride
        q = -(-r // s)
        cols = patches.transpose(1, 2)  # (P, D, N)
        if not cols.is_contiguous():
            cols = cols.contiguous()
        y = cols.view(Ph, Pw, C, r, r, N)
        out = torch.empty(C, H, W, N, device=patches.device, dtype=patches.dtype)
        if bias is None:
            out.zero_()
        else:
            out.copy_(bias.unsqueeze(3).expand(C, H, W, N))
        sc, sh, sw, _ = out.stride()
        for a in range(min(q, Ph)):
            for b in range(min(q, Pw)):
                ma, nb = len(range(a, Ph, q)), len(range(b, Pw, q))
                region = out.as_strided(
                    (C, ma, r, nb, r, N),
                    (sc, s * q * sh, sh, s * q * sw, sw, 1),
                    s * a * sh + s * b * sw,
                )  # (C, ma, r, nb, r, N): the group's disjoint fields
                region.add_(y[a::q, b::q].permute(2, 0, 3, 1, 4, 5))
        return out.permute(3, 0, 1, 2)  # (N, C, H, W) view of (C, H, W, N)

    def to_internal(self, h: Tensor) -> Tensor:
        """Hidden maps (N, K, Ph, Pw) -> internal (P, N, K)."""
        N = h.shape[0]
        return h.permute(2, 3, 0, 1).reshape(self.n_positions, N, self.n_maps)

    def to_maps(self, h: Tensor) -> Tensor:
        """Internal (P, N, K) -> hidden maps (N, K, Ph, Pw)."""
        Ph, Pw = self.grid
        N = h.shape[1]
        return h.reshape(Ph, Pw, N, self.n_maps).permute(2, 3, 0, 1)  # (N, K, Ph, Pw)

    # ------------------------------------------------------------- model hooks
    def _begin_step(self, n_data: int, n_negative: int) -> None:
        """Size the reused workspace: patches of data and sample side by side, (P, D, n0 + nk).

        Reusing it avoids a fresh allocation (new pages, page faults) per pass, and
        lets the gradient be one bmm over both phases.
        """
        rows = n_data + n_negative
        ws = self._ws
        if ws is None or ws.shape[2] != rows or ws.dtype != self.dtype:
            P, D = self.n_positions, self.patch_size
            self._ws = torch.empty(P, D, rows, device=self.device, dtype=self.dtype)
        self._ws_split = n_data

    def _up(self, v: Tensor, slot: int | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x_pk = c_pk + W_pk . patch_p(v) as (P, N, K), and (v, patches (P, N, D))."""
        out = None
        if slot is not None:
            n0 = self._ws_split
            out = self._ws[:, :, :n0] if slot == 0 else self._ws[:, :, n0:]
            assert out.shape[2] == v.shape[0], "workspace sized for another batch"
        pv = self.patches(v, out)  # (P, N, D) view of (P, D, N)
        x = torch.baddbmm(self.params["c"].unsqueeze(2), self.params["W"], pv.transpose(1, 2))
        return x.transpose(1, 2), (v, pv)  # x: (P, N, K) view of (P, K, N)

    def _hidden_input(self, v: Tensor) -> Tensor:
        """Total hidden input (P, N, K)."""
        return self._up(v)[0]

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = act(b + fold(h_p W_p)) from internal h (P, N, K)."""
        y = torch.bmm(self.params["W"].transpose(1, 2), h.transpose(1, 2))  # (P, D, N)
        x = self.fold(y.transpose(1, 2), bias=self.params["b"])  # (N, C, H, W), batch-last
        return torch.sigmoid_(x) if self.visible == "bernoulli" else x

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """Bernoulli(mean), or N(mean, 1) for Gaussian visibles."""
        if self.visible == "bernoulli":
            return bernoulli_sample(mean, generator)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise.add_(mean)

    def _gradient(
        self, a0: tuple[Tensor, Tensor], p0: Tensor, ak: tuple[Tensor, Tensor], pk: Tensor
    ) -> dict[str, Tensor]:
        """Per-position <h patch^T>_data - <h patch^T>_model; biases likewise (means over rows)."""
        (v0, pv0), (vk, pvk) = a0, ak
        n0, nk = pv0.shape[1], pvk.shape[1]
        ws = self._ws
        if ws is not None and pv0.data_ptr() == ws.data_ptr() and nk + n0 == ws.shape[2]:
            # both phases in one bmm over the shared workspace: [p0 / n0, -pk / nk]^T [pv0; pvk]
            coef = self._coef_buffer(n0 + nk, p0.shape[2])  # (P, n0 + nk, K)
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
        db = torch.mv(flat0.t(), w0).addmv_(flatk.t(), wk).view(self.in_shape)  # (C, H, W)
        return {"W": dW, "b": db, "c": dc}

    def _hidden_batch_mean(self, p: Tensor) -> Tensor:
        """Mean over the batch dim of (P, N, K) -> (P, K)."""
        return p.mean(1)

    def _coef_buffer(self, rows: int, k: int) -> Tensor:
        """Reused (P, rows, K) buffer for the scaled hidden probabilities of both phases."""
        buf = self._coef
        if buf is None or buf.shape[1] != rows or buf.dtype != self.dtype:
            buf = torch.empty(self.n_positions, rows, k, device=self.device, dtype=self.dtype)
            self._coef = buf
        return buf

    def _chain_rows(self, chain: Tensor) -> int:
        """Persistent chains in internal h (P, N, K)."""
        return chain.shape[1]

    def _resize_chain(self, h: Tensor, n: int) -> Tensor:
        """Repeat the batch dim (1) of internal h (P, N, K) to n chains."""
        idx = torch.arange(n, device=h.device) % h.shape[1]
        return h.index_select(1, idx)

    def check_maps(self, v: Tensor) -> None:
        """Raise ValueError unless v is (N, C, H, W) with this model's (C, H, W)."""
        if v.dim() != 4 or tuple(v.shape[1:]) != self.in_shape:
            shape = tuple(v.shape)
            raise ValueError(f"input {shape} is not (N, *in_shape) with in_shape={self.in_shape}")

    # ------------------------------------------------------------- public API
    @torch.no_grad()
    def compute_update(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """CD-k / PCD-k update, see :meth:`RBMBase.compute_update`, by this model's backend."""
        return self.impl.compute_update(self.as_input(v), generator or self.generator)

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v (or |v - b|^2 / 2) - sum_pk softplus(x_pk); shape (N,)."""
        v = self.as_input(v)
        hidden = self.impl.free_energy_hidden(v)
        b = self.params["b"]
        if self.visible == "bernoulli":
            return -(v * b).sum((1, 2, 3)) - hidden
        return 0.5 * (v - b).square().sum((1, 2, 3)) - hidden

    @torch.no_grad()
    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        return self.impl.mean_hiddens(self.as_input(v))

    @torch.no_grad()
    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        return self.impl.mean_visibles(self.as_input(h))

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        return self.impl.reconstruction_error(self.as_input(v))


class TorchLocal:
    """LocalRBM's torch formulation (unfold + bmm + fold): the CUDA path and the reference.

    The CD step is :meth:`RBMBase.compute_update` over the model's torch hooks (``_up``,
    ``_visible_mean``, ``_gradient``); the conditionals use the same hooks.
    """

    def __init__(self, rbm: LocalRBM) -> None:
        self.rbm = rbm

    def compute_update(self, v: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        return RBMBase.compute_update(self.rbm, v, generator=g)

    def free_energy_hidden(self, v: Tensor) -> Tensor:
        x, _ = self.rbm._up(v)
        return F.softplus(x).sum((0, 2))

    def mean_hiddens(self, v: Tensor) -> Tensor:
        return self.rbm.to_maps(torch.sigmoid_(self.rbm._hidden_input(v)))

    def mean_visibles(self, h: Tensor) -> Tensor:
        return self.rbm._visible_mean(self.rbm.to_internal(h)).contiguous()

    def reconstruction_error(self, v: Tensor) -> Tensor:
        rbm = self.rbm
        recon = rbm._visible_mean(torch.sigmoid_(rbm._hidden_input(v)))
        return (recon - v).square().mean()
