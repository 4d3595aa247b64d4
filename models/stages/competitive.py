"""A competitive stage: windows of the stage below at every position and size, whitened, and
units that compete for them (Coates, Karpathy & Ng 2012's large top stage, in RBM form).

The stage reads a list of levels ``[(N, C, h_i, w_i)]``: the stage below run on each size of an
image pyramid of the frame (``StageConfig.sizes``). Every ``field x field`` window ``x`` (C r r
values) of every level is whitened to ``dims`` values (PCA fitted by :meth:`CompetitiveStage.
prepare`, regulariser ``whiten_eps`` times the mean kept variance: one convolution) and scaled
to unit length, ``w = Z (x - mu) / |Z (x - mu)|``. Unit ``k`` with weights ``u_k`` responds with
``u_k . w`` at every window; its stage response is the max over every position of every level
(pooling over position and size), so it fires for its pattern wherever it is and at any of the
sizes.

Learners: ``"rbm"``, a one-of-K RBM (:class:`models.rbm.softmax.SoftmaxRBM`) on ``sqrt(dims) w``
(unit variance per value, as its Gaussian visibles assume), ``u_k = W_k``; ``"kmeans"``,
spherical k-means (:class:`models.competitive.kmeans_learner.KMeansLearner`), ``u_k`` its unit
directions. Both start at whitened windows of the data. Layer: ``"pooled"`` (N, K, 1, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.competitive.kmeans_learner import KMeansLearner
from models.competitive.seeding import SPREAD_CANDIDATES, spread_picks
from models.competitive.whitening import Whitening
from models.kernels.fft_conv import WindowConv
from models.pooling import pool_over_sizes
from models.rbm.softmax import SoftmaxRBM
from models.stages.buffers import loaded_buffers
from models.stages.config import StageConfig
from models.stages.windows import windows_hwc

WHITEN_WINDOWS = 12_000  # windows the whitening is fitted on


class CompetitiveStage:
    """Whitened windows of every level -> ``n_maps`` competing units -> max over all."""

    layers: tuple[str, ...] = ("pooled",)
    output_layer = "pooled"
    needs_data = True

    def __init__(self, config: StageConfig, in_shape: tuple[int, int, int], *, update,
                 generator, device, dtype) -> None:
        self.config = config
        C, r, d = in_shape[0], config.field, config.dims
        kw = {"config": config.rbm_config(), "update": update, "generator": generator,
              "device": device, "dtype": dtype}
        if config.learner == "rbm":
            kw["config"] = type(kw["config"])(k=config.k, check_interval=config.check_interval)
            self.learner = SoftmaxRBM(d, config.n_maps, **kw)
        else:
            self.learner = KMeansLearner(d, config.n_maps, **kw)
        self.scale = d**0.5 if config.learner == "rbm" else 1.0
        self._set_white(torch.zeros(d, C, r, r, device=device, dtype=dtype),
                        torch.zeros(d, device=device, dtype=dtype))

    def _set_white(self, weight: Tensor, bias: Tensor) -> None:
        """The whitening: its convolution ``(dims, C, r, r)`` and bias (``white``, what is saved)
        and ``whiten_conv``, the convolution by the cheaper of the direct and the FFT form."""
        self.white = {"weight": weight, "bias": bias}
        self.whiten_conv = WindowConv(weight, bias, self.config.stride)

    def unit_weights(self) -> Tensor:
        """``u (K, dims)``: what each unit's response dots with a window."""
        if self.config.learner == "rbm":
            return self.learner.params["W"]
        return self.learner.unit_weights()

    def encode(self, levels: list[Tensor]) -> list[Tensor]:
        """Every window of every level whitened, before the normalisation: [(N, dims, p_i,
        q_i)], a convolution per level (by FFT where that is cheaper:
        :class:`models.kernels.fft_conv.WindowConv`). Fixed once the stage is prepared, so a
        :class:`models.read_cache.ReadCache` keeps it per frame while the stage trains; an
        input's encoding does not depend on its batch (``WindowConv.each``), so a run is the
        same whichever frames were cached."""
        return [self.whiten_conv.each(level) for level in levels]

    def whitened(self, levels: list[Tensor]) -> list[Tensor]:
        """:meth:`encode` in one call per level for the whole batch: as fast or faster, and
        equal to it up to float rounding (the stage's own maps; the cache keeps :meth:`encode`)."""
        return [self.whiten_conv(level) for level in levels]

    def windows(self, levels: list[Tensor]) -> list[Tensor]:
        """Unit-length whitened windows of each level: [(N, dims, p_i, q_i)]."""
        return [y / y.norm(dim=1, keepdim=True).clamp(min=1e-8) for y in self.whitened(levels)]

    def responses(self, levels: list[Tensor]) -> list[Tensor]:
        """``u_k . w`` at every window of every level: [(N, K, p_i, q_i)]."""
        u = self.unit_weights()
        return [torch.einsum("ndpq,kd->nkpq", w, u) for w in self.windows(levels)]

    def differentiable_maps(self, levels: list[Tensor]) -> dict[str, Tensor]:
        """``{"pooled": max over positions and sizes (N, K, 1, 1)}``."""
        return {"pooled": pool_over_sizes(self.responses(levels), "max")[:, :, None, None]}

    def own_unit_responses(self, levels: list[Tensor], units: Tensor) -> Tensor:
        """(N,) input ``n``'s pooled response of unit ``units[n]``: its best ``u_k . w`` over
        every window of every level, differentiable in ``levels``.

        The max's gradient flows through the best window alone, so the best window is found
        without gradients (:meth:`_best_windows`) and only that one window per input is
        whitened with them, ``w = Z x + b`` by one product: the value and the gradient of
        :meth:`differentiable_maps`' ``pooled[n, units[n]]``, up to float rounding, without
        the backward of the whitening convolution over every window of every level (what an
        optimal stimulus pays at each ascent step)."""
        u = self.unit_weights()[units]  # (N, d)
        level, rows, cols = self._best_windows([v.detach() for v in levels], u)
        r, s = self.config.field, self.config.stride
        x = torch.stack([levels[int(lv)][n, :, int(p) * s:int(p) * s + r,
                                         int(q) * s:int(q) * s + r]
                         for n, (lv, p, q) in enumerate(zip(level, rows, cols, strict=True))])
        weight, bias = self.white["weight"], self.white["bias"]
        y = x.flatten(1) @ weight.flatten(1).T + bias  # (N, d): the best window, whitened
        w = y / y.norm(dim=1, keepdim=True).clamp(min=1e-8)
        return (w * u).sum(1)

    @torch.no_grad()
    def _best_windows(self, levels: list[Tensor], u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(level, row, column) of each input's best window for its own unit ``u[n]`` (N, d),
        each (N,); an exact tie goes to the first level and the first position."""
        best = level = pos = None
        widths = []
        for i, y in enumerate(self.whitened(levels)):
            widths.append(y.shape[3])
            y = y.flatten(2)  # (N, d, P Q)
            r = torch.einsum("ndp,nd->np", y, u) / torch.linalg.vector_norm(
                y, dim=1).clamp(min=1e-8)
            value, where = r.max(1)
            if best is None:
                best, level, pos = value, torch.zeros_like(where), where
                continue
            better = value > best
            best = torch.where(better, value, best)
            level, pos = torch.where(better, i, level), torch.where(better, where, pos)
        q = torch.tensor(widths, device=pos.device)[level]
        return level, pos // q, pos % q

    @torch.no_grad()
    def maps(self, levels: list[Tensor]) -> dict[str, Tensor]:
        """:meth:`differentiable_maps` without gradients, with no normalised copy of the
        windows: per level ``max_p (u_k . y_p) / |y_p|`` from one product ``u (K, d) @ y (N, d,
        P)`` scaled by each window's inverse norm; then the max over the levels."""
        return self._pooled(self.whitened(levels))

    @torch.no_grad()
    def encoded_maps(self, encoded: list[Tensor], index: Tensor | None = None
                     ) -> dict[str, Tensor]:
        """:meth:`maps` from :meth:`encode`'s levels (a :class:`models.read_cache.ReadCache`'s
        store), of the inputs ``index`` (n,) (default: all): no frame goes through the stages
        below or the whitening again. Equal to :meth:`maps` up to float rounding."""
        return self._pooled([y if index is None else y[index] for y in encoded])

    def _pooled(self, whitened: list[Tensor]) -> dict[str, Tensor]:
        """``{"pooled": (N, K, 1, 1)}``: each unit's best cosine over the windows of every
        level of ``whitened`` [(N, d, P_i, Q_i)]."""
        u, best = self.unit_weights(), None
        for y in whitened:
            y = y.flatten(2)
            inv = torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_(min=1e-8).reciprocal_()
            r = torch.matmul(u, y).mul_(inv).amax(2)  # (N, K)
            best = r if best is None else torch.maximum(best, r)
        return {"pooled": best[:, :, None, None]}

    @staticmethod
    def _draw(N: int, P: int, Q: int, per_input: int, generator: torch.Generator,
              device) -> tuple[Tensor, Tensor, Tensor]:
        """``per_input`` random window positions of each of ``N`` inputs on a ``P x Q`` grid of
        windows: (input, row, column) indices, each (N per_input,). One draw for both
        :meth:`_sample` and :meth:`_positions`, so they read the same windows."""
        n = N * per_input
        i = torch.arange(N, device=device).repeat_interleave(per_input)
        p = torch.randint(P, (n,), generator=generator).to(device)
        q = torch.randint(Q, (n,), generator=generator).to(device)
        return i, p, q

    def _sample(self, x: Tensor, per_input: int, generator: torch.Generator) -> Tensor:
        """``per_input`` random raw windows of each input of one level ``x (N, C, H, W)``,
        position-major (:func:`~models.stages.windows.windows_hwc`): (N per_input, r r C)."""
        r, s = self.config.field, self.config.stride
        N, _, H, W = x.shape
        i, p, q = self._draw(N, (H - r) // s + 1, (W - r) // s + 1, per_input, generator,
                             x.device)
        return windows_hwc(x, i, p * s, q * s, r)

    def _positions(self, y: Tensor, per_input: int, generator: torch.Generator,
                   index: Tensor | None = None) -> Tensor:
        """``per_input`` random whitened windows of each input of one encoded level ``y (N, d,
        P, Q)``, unnormalised: (N per_input, d); the windows :meth:`_sample` reads with the
        same generator, whitened by the convolution. With ``index`` (n,) the inputs are ``y``'s
        entries ``index`` (a store of encodings, :class:`models.read_cache.ReadCache`), so no
        batch of whole encodings is copied out to sample a few windows of each."""
        n = len(y) if index is None else len(index)
        i, p, q = self._draw(n, y.shape[2], y.shape[3], per_input, generator, y.device)
        y, i = y.permute(0, 2, 3, 1), (i if index is None else index[i])  # (N, P, Q, d)
        if not y.is_contiguous():  # encoded now: not channels-last
            return y[i, p, q]
        # channels-last (a cache's store): each window is a row of (N P Q, d), one gather
        return y.reshape(-1, y.shape[3]).index_select(0, (i * y.shape[1] + p) * y.shape[2] + q)

    def whiten(self, rows: Tensor) -> Tensor:
        """Raw windows (M, r r C), position-major -> unit-length whitened windows (M, dims)."""
        weight = self.white["weight"].permute(0, 2, 3, 1).flatten(1)  # (dims, r r C)
        y = torch.addmm(self.white["bias"], rows, weight.T)
        return y / y.norm(dim=1, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def rows(self, levels: list[Tensor], generator: torch.Generator | None = None) -> Tensor:
        """What the learner trains on: ``rows_per_frame`` random whitened windows per input,
        spread evenly over the levels, times the learner's input scale."""
        per = max(1, self.config.rows_per_frame // len(levels))
        g = generator or self.learner.generator
        return torch.cat([self.whiten(self._sample(x, per, g)) for x in levels]) * self.scale

    @torch.no_grad()
    def encoded_rows(self, encoded: list[Tensor], generator: torch.Generator | None = None,
                     index: Tensor | None = None) -> Tensor:
        """:meth:`rows` from :meth:`encode` of the levels: the same windows (the same draws),
        whitened by the convolution rather than one product per window (equal up to float
        rounding). ``index`` (n,): the batch is ``encoded``'s entries ``index`` (default: all
        of them, in order)."""
        per = max(1, self.config.rows_per_frame // len(encoded))
        g = generator or self.learner.generator
        y = torch.cat([self._positions(x, per, g, index) for x in encoded])
        return y.div_(y.norm(dim=1, keepdim=True).clamp(min=1e-8)).mul_(self.scale)

    @torch.no_grad()
    def prepare(self, levels: list[Tensor], weights: str, generator: torch.Generator) -> None:
        """Fit the whitening on windows of ``levels``; then ``"exemplar"``: units start at
        distinct whitened windows (:meth:`_start_units`); ``"random"``: at their random initial
        weights."""
        st, N = self.config, len(levels[0])
        C, r = levels[0].shape[1], st.field
        per = max(1, -(-WHITEN_WINDOWS // (N * len(levels))))
        x = torch.cat([self._sample(level, per, generator) for level in levels])
        x = x.view(len(x), r, r, C).permute(0, 3, 1, 2).flatten(1)  # as the conv reads: C r r
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        fit = Whitening(st.dims, method="randomized", generator_seed=seed).fit(x)
        w = fit.with_eps(st.whiten_eps * float(fit.variances_.mean()))
        weight, bias = w.as_conv(C, r)
        self._set_white(weight.contiguous(), bias)
        if weights == "exemplar":
            self._start_units(levels, generator)

    def _start_units(self, levels: list[Tensor], generator: torch.Generator) -> None:
        """Start the units at distinct whitened training windows: ``init = "exemplar"`` K of
        4 K random ones, ``"spread"`` K spread-out ones among ``SPREAD_CANDIDATES`` K
        (:func:`models.competitive.seeding.spread_picks`)."""
        st, N = self.config, len(levels[0])
        per_unit = SPREAD_CANDIDATES if st.init == "spread" else 4
        per = max(1, -(-per_unit * st.n_maps // (N * len(levels))))
        rows = torch.cat([self.whiten(self._sample(level, per, generator))
                          for level in levels]) * self.scale
        pick = spread_picks(rows, st.n_maps, generator) if st.init == "spread" else None
        self.learner.init_from_data(rows, pick=pick)

    def state_dict(self) -> dict:
        """The learner's state and the whitening."""
        return {"learner": self.learner.state_dict(), "white": dict(self.white)}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (shapes must match)."""
        white = loaded_buffers(self.white, state["white"])
        self._set_white(white["weight"], white["bias"])
        self.learner.load_state_dict(state["learner"])
