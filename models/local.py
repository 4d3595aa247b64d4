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
an unfold (a strided copy) or a fold (``F.fold``, the scatter-add of overlapping patches); there
is no Python loop over positions. Internally hidden tensors are ``(P, N, K)``; the public
methods take and return hidden maps ``(N, K, Ph, Pw)``.

Parameter layout (a parameter server shards ``W`` and ``c`` by position along dim 0):
``W (P, K, C r r)``, ``c (P, K)``, ``b (C, H, W)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from models.optim import UpdateConfig
from models.rbm import RBMBase, RBMConfig, bernoulli_sample


def positions(size: int, field: int, stride: int) -> int:
    """Number of receptive-field positions along one side: (size - field) // stride + 1."""
    return (size - field) // stride + 1


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
    config, update, generator, device, dtype : as for :class:`models.rbm.BernoulliRBM`.

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
        if update is None and visible == "gaussian":
            update = UpdateConfig(learning_rate=0.001)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
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

        ``out`` (P, N, D) (a slice of a reused workspace; rows of each position contiguous)
        receives the copy instead of a fresh allocation.
        """
        v = v.contiguous()
        N, C, H, W = v.shape
        if (C, H, W) != self.in_shape:
            raise ValueError(f"input maps {(C, H, W)} != LocalRBM in_shape {self.in_shape}")
        Ph, Pw = self.grid
        r, s = self.field, self.stride
        sn, sc, sh, sw = v.stride()
        view = v.as_strided(
            (Ph, Pw, N, C, r, r), (s * sh, s * sw, sn, sc, sh, sw)
        )  # (Ph, Pw, N, C, r, r), no copy
        if out is None:
            return view.reshape(self.n_positions, N, self.patch_size)  # (P, N, D), copy
        out.view(Ph, Pw, N, C, r, r).copy_(view)
        return out

    def fold(self, patches: Tensor) -> Tensor:
        """fold: (P, N, C*r*r) -> (N, C, H, W), overlapping patches summed."""
        P, N, D = patches.shape
        C, H, W = self.in_shape
        cols = patches.permute(1, 2, 0)  # (N, D, P)
        return F.fold(cols, (H, W), self.field, stride=self.stride)  # (N, C, H, W)

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
        """Size the reused workspace: patches of data and sample side by side (P, n0 + nk, D).

        Reusing it avoids a fresh 20+ MB allocation (new pages, page faults) per pass, and
        lets the gradient be one bmm over both phases.
        """
        rows = n_data + n_negative
        ws = getattr(self, "_ws", None)
        if ws is None or ws.shape[1] != rows or ws.dtype != self.dtype:
            P, D = self.n_positions, self.patch_size
            self._ws = torch.empty(P, rows, D, device=self.device, dtype=self.dtype)
        self._ws_split = n_data

    def _up(self, v: Tensor, slot: int | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x_pk = c_pk + W_pk . patch_p(v) as (P, N, K), and (v, patches (P, N, D))."""
        out = None
        if slot is not None:
            n0 = self._ws_split
            out = self._ws[:, :n0] if slot == 0 else self._ws[:, n0:]
            assert out.shape[1] == v.shape[0], "workspace sized for another batch"
        pv = self.patches(v, out)
        x = torch.baddbmm(self.params["c"].unsqueeze(1), pv, self.params["W"].transpose(1, 2))
        return x, (v, pv)

    def _hidden_input(self, v: Tensor) -> Tensor:
        """Total hidden input (P, N, K)."""
        return self._up(v)[0]

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = act(b + fold(h_p W_p)) from internal h (P, N, K)."""
        x = self.fold(torch.bmm(h, self.params["W"])).add_(self.params["b"])
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
        ws = getattr(self, "_ws", None)
        if ws is not None and pv0.data_ptr() == ws.data_ptr() and nk + n0 == ws.shape[1]:
            # both phases in one bmm over the shared workspace: [p0 / n0, -pk / nk]^T [pv0; pvk]
            coef = self._coef_buffer(n0 + nk, p0.shape[2])  # (P, n0 + nk, K)
            torch.mul(p0, 1.0 / n0, out=coef[:, :n0])
            torch.mul(pk, -1.0 / nk, out=coef[:, n0:])
            dW = torch.bmm(coef.transpose(1, 2), ws)  # (P, K, D)
            dc = coef.sum(1)  # (P, K) = mean(p0) - mean(pk)
        else:
            dW = torch.bmm(p0.transpose(1, 2), pv0).mul_(1.0 / n0)  # (P, K, D)
            dW.baddbmm_(pk.transpose(1, 2), pvk, alpha=-1.0 / nk)
            dc = p0.mean(1) - pk.mean(1)  # (P, K)
        # visible bias: batch means as matrix-vector products (a strided sum over the batch
        # dimension measured several times slower)
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
        buf = getattr(self, "_coef", None)
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

    # ------------------------------------------------------------- public API
    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v (or |v - b|^2 / 2) - sum_pk softplus(x_pk); shape (N,)."""
        v = self._as_input(v)
        x, _ = self._up(v)
        hidden = F.softplus(x).sum((0, 2))
        b = self.params["b"]
        if self.visible == "bernoulli":
            return -(v * b).sum((1, 2, 3)) - hidden
        return 0.5 * (v - b).square().sum((1, 2, 3)) - hidden

    @torch.no_grad()
    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        return self.to_maps(torch.sigmoid_(self._hidden_input(self._as_input(v))))

    @torch.no_grad()
    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        return self._visible_mean(self.to_internal(self._as_input(h)))

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        v = self._as_input(v)
        recon = self._visible_mean(torch.sigmoid_(self._hidden_input(v)))
        return (recon - v).square().mean()
