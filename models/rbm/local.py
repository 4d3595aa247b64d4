"""Locally connected RBM: untied weights per receptive-field position (Le et al. 2012).

Visible maps ``v (C, H, W)``; hidden units sit on a grid of ``Ph x Pw = P`` receptive-field
positions, ``K`` maps per position (:class:`models.rbm.local_geometry.LocalGeometry`). Position
``p`` has its own weights ``W[p] (K, D)`` over its patch of ``D = C r r`` values and hidden
biases ``c[p] (K,)``; the visible biases ``b (C, H, W)`` are shared by all positions. The energy
is the dense RBM energy with a weight matrix that is zero outside each unit's field, so in
P(v|h) overlapping fields *sum* into the visible input::

    P(h_pk = 1 | v) = sigmoid(c_pk + W_pk . patch_p(v))
    E[v | h]        = act(b + fold_p(h_p W_p))        (act = sigmoid or identity)

The computation is one backend, chosen once when the model is built, behind
:class:`LocalBackend`: :class:`models.rbm.local_torch.TorchLocal` (unfold + bmm + fold: the CUDA
path and the reference) or, on CPU, :class:`models.rbm.local_numba.NumbaLocal` (fused numba
kernels that read receptive fields straight from a batch-last image). A backend receives the
geometry once and the parameters, chains and CD settings with each call; the model keeps the
state (parameters, chains, sparsity estimate, optimiser). The public methods take and return
hidden maps ``(N, K, Ph, Pw)``; internally hidden tensors are ``(P, N, K)``.

Parameter layout (a parameter server shards ``W`` and ``c`` by position along dim 0):
``W (P, K, C r r)``, ``c (P, K)``, ``b (C, H, W)``.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

from models.kernels import local as local_kernels
from models.rbm.cd import CDSettings, CDStep
from models.rbm.dense import RBMBase, RBMConfig, visible_update
from models.rbm.local_geometry import LocalGeometry, positions
from models.rbm.local_numba import NumbaLocal
from models.rbm.local_torch import Phase, TorchLocal
from models.rbm.optim import UpdateConfig

__all__ = ["LocalBackend", "LocalRBM", "make_backend", "positions"]

Visible = Literal["bernoulli", "gaussian"]


class LocalBackend(Protocol):
    """What a LocalRBM backend computes from the parameters ``params`` (``W``, ``b``, ``c``) it
    is given; inputs are already on the model's device and dtype."""

    def compute_update(
        self,
        params: dict[str, Tensor],
        v0: Tensor,
        *,
        chain: Tensor | None,
        n_negative: int,
        cd: CDSettings,
        generator: torch.Generator,
    ) -> CDStep:
        """CD-k / PCD-k step of the batch ``v0`` (N, C, H, W); chains (P, nk, K)."""

    def free_energy_hidden(self, params: dict[str, Tensor], v: Tensor) -> Tensor:
        """The hidden part of the free energy, sum_pk softplus(x_pk): (N,)."""

    def mean_hiddens(self, params: dict[str, Tensor], v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""

    def mean_visibles(self, params: dict[str, Tensor], h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""

    def reconstruction_error(self, params: dict[str, Tensor], v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""


def make_backend(
    backend: Literal["auto", "torch", "numba"],
    geometry: LocalGeometry,
    visible: Visible,
    device: torch.device,
    dtype: torch.dtype,
) -> TorchLocal | NumbaLocal:
    """The backend for ``backend``: ``"auto"`` = numba where it can serve (installed, CPU,
    float32/float64), torch otherwise.

    Raises
    ------
    ValueError : an unknown name, or ``"numba"`` where numba cannot serve.
    """
    if backend not in ("auto", "torch", "numba"):
        raise ValueError(f"backend={backend!r} must be 'auto', 'torch' or 'numba'")
    numba_ok = local_kernels.HAVE_NUMBA and device.type == "cpu"
    numba_ok = numba_ok and dtype in (torch.float32, torch.float64)
    if backend == "numba" and not numba_ok:
        raise ValueError(
            f"backend='numba' needs numba, a CPU device and float32/float64 "
            f"(numba installed: {local_kernels.HAVE_NUMBA}, device {device}, {dtype})"
        )
    if numba_ok and backend != "torch":
        return NumbaLocal(geometry, visible, dtype)
    return TorchLocal(geometry, visible, device, dtype)


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
        visible: Visible = "bernoulli",
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        backend: Literal["auto", "torch", "numba"] = "auto",
    ) -> None:
        self.geometry = LocalGeometry(tuple(in_shape), field, stride, n_maps)
        update = visible_update(visible, update)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        self.visible = visible
        self.impl: LocalBackend = make_backend(backend, self.geometry, visible, self.device, dtype)
        # RBMBase's hooks (sampling the visibles, tests of the conditionals) use the torch
        # formulation whatever the backend
        self.reference = (
            self.impl
            if isinstance(self.impl, TorchLocal)
            else TorchLocal(self.geometry, visible, self.device, dtype)
        )
        self.params = self._local_params()

    @torch.no_grad()
    def _local_params(self) -> dict[str, Tensor]:
        """W ~ N(0, init_std^2) (P, K, D), zero biases b (C, H, W) and c (P, K)."""
        geo, kw = self.geometry, {"device": self.device, "dtype": self.dtype}
        W = torch.randn(geo.n_positions, geo.n_maps, geo.patch_size, generator=self.generator, **kw)
        return {
            "W": W.mul_(self.config.init_std),  # (P, K, C*r*r)
            "b": torch.zeros(geo.in_shape, **kw),
            "c": torch.zeros(geo.n_positions, geo.n_maps, **kw),
        }

    # ------------------------------------------------------------- geometry
    @property
    def backend(self) -> Literal["torch", "numba"]:
        """The backend chosen when the model was built."""
        return "numba" if isinstance(self.impl, NumbaLocal) else "torch"

    in_shape = property(lambda self: self.geometry.in_shape, doc="Visible maps (C, H, W).")
    field = property(lambda self: self.geometry.field, doc="Receptive-field side r.")
    stride = property(lambda self: self.geometry.stride, doc="Step between fields s.")
    n_maps = property(lambda self: self.geometry.n_maps, doc="Hidden units per position K.")
    grid = property(lambda self: self.geometry.grid, doc="Positions (Ph, Pw).")
    n_positions = property(lambda self: self.geometry.n_positions, doc="Positions P.")
    patch_size = property(lambda self: self.geometry.patch_size, doc="Values per field C r r.")
    n_hidden = property(lambda self: self.geometry.n_hidden, doc="Total hidden units P * K.")
    n_visible = property(lambda self: self.geometry.n_visible, doc="Total visible units C H W.")

    # ------------------------------------------------------------- RBMBase hooks (torch)
    def _up(self, v: Tensor, slot: int | None = None) -> tuple[Tensor, Phase]:
        """x_pk = c_pk + W_pk . patch_p(v) as (P, N, K), and (v, patches (P, N, D))."""
        return self.reference.up(self.params, v)

    def _hidden_input(self, v: Tensor) -> Tensor:
        """Total hidden input (P, N, K)."""
        return self._up(v)[0]

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = act(b + fold(h_p W_p)) from internal h (P, N, K)."""
        return self.reference.visible_mean(self.params, h)

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """Bernoulli(mean), or N(mean, 1) for Gaussian visibles."""
        return self.reference.sample_visible(mean, generator)

    def _gradient(self, a0: Phase, p0: Tensor, ak: Phase, pk: Tensor) -> dict[str, Tensor]:
        """Per-position <h patch^T>_data - <h patch^T>_model; biases likewise."""
        return self.reference.gradient(a0, p0, ak, pk)

    def _chain_rows(self, chain: Tensor) -> int:
        """Persistent chains in internal h (P, N, K)."""
        return chain.shape[1]

    # ------------------------------------------------------------- public API
    @torch.no_grad()
    def compute_update(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """CD-k / PCD-k update, see :meth:`RBMBase.compute_update`, by this model's backend."""
        v0 = self.as_input(v)
        step = self.impl.compute_update(
            self.params,
            v0,
            chain=self.chain_h,
            n_negative=self.negative_rows(v0.shape[0]),
            cd=self.config,
            generator=generator or self.generator,
        )
        return self.record_step(step)

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v (or |v - b|^2 / 2) - sum_pk softplus(x_pk); shape (N,)."""
        v = self.as_input(v)
        hidden = self.impl.free_energy_hidden(self.params, v)
        b = self.params["b"]
        if self.visible == "bernoulli":
            return -(v * b).sum((1, 2, 3)) - hidden
        return 0.5 * (v - b).square().sum((1, 2, 3)) - hidden

    @torch.no_grad()
    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) as hidden maps (N, K, Ph, Pw)."""
        return self.impl.mean_hiddens(self.params, self.as_input(v))

    @torch.no_grad()
    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h] (N, C, H, W) from hidden maps (N, K, Ph, Pw)."""
        return self.impl.mean_visibles(self.params, self.as_input(h))

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction."""
        return self.impl.reconstruction_error(self.params, self.as_input(v))
