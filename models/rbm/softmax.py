"""One-of-K (softmax-hidden) RBM with Gaussian visibles: the RBM form of (spherical) k-means.

The hidden layer is a single softmax unit with ``K`` states (exactly one ``h_k = 1``); the
visibles are Gaussian with unit variance::

    E(v, h=k) = |v - b|^2 / 2 - c_k - W_k . v
    P(h = k | v) = softmax_k(c_k + W_k . v)
    P(v | h = k) = N(b + W_k, I)
    F(v) = |v - b|^2 / 2 - logsumexp_k(c_k + W_k . v)

So the model is a mixture of K unit-variance Gaussians with means ``b + W_k``; on whitened inputs
normalised to a common length, ``W_k . v`` ranks the units as cosine similarity does, and P(h|v)
is a soft version of spherical k-means' assignment (hard as the input length grows). The input
length sets that temperature: inputs normalised to length ``sqrt(D)`` have unit variance per
dimension, as the Gaussian visibles assume.

Training is CD-k: positive statistics from P(h|v) of the data, negative ones from a Gibbs chain
(h ~ categorical, v ~ N(b + W_h, I)). The update is made of per-unit **sums and counts**::

    sums_k = sum_n P(h=k|v_n) v_n,   counts_k = sum_n P(h=k|v_n),   total = sum_n v_n,   n

for the data and for the chain (:meth:`SoftmaxRBM.statistics`); these add over workers, and the
gradient is ``dW_k = sums_k / n - sums'_k / n'``, ``dc_k = counts_k / n - counts'_k / n'``,
``db = total / n - total' / n'`` (:func:`update_from_statistics`), applied by the elementwise
updater of ``models.rbm.optim``. A unit's own response is its hidden input ``c_k + W_k . v``
(the softmax normalises across units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.rbm.dense import RBMBase, RBMConfig, visible_update
from models.rbm.optim import UpdateConfig

PHASES = ("data", "model")


def categorical_index(p: Tensor, generator: torch.Generator) -> Tensor:
    """States k (N,) int64 drawn from Categorical(p) for p (N, K) (rows sum to 1), by inverting
    each row's CDF at one uniform draw ``u`` in [0, 1): ``k = #{j : cumsum(p)_j <= u * sum(p)}``
    (scaling by the row's own sum keeps the last state reachable and never past it whatever the
    rounding of the sums; a state of probability 0 is never drawn).
    One cumulative sum, one draw and one binary search per row (``searchsorted`` on the
    monotone CDF counts the same ``j`` as comparing every entry, at half the cost);
    ``torch.multinomial`` costs about ten times as much here."""
    cdf = torch.cumsum(p, 1)
    u = torch.rand(p.shape[0], 1, generator=generator, device=p.device, dtype=p.dtype)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return idx.clamp_(max=p.shape[1] - 1)


def categorical_sample(p: Tensor, generator: torch.Generator) -> Tensor:
    """One-hot rows h (N, K) of :func:`categorical_index`."""
    return F.one_hot(categorical_index(p, generator), p.shape[1]).to(p.dtype)


def phase_statistics(v: Tensor, p: Tensor) -> dict[str, Tensor]:
    """sums (K, D) = p^T v, counts (K,) = sum_n p, total (D,) = sum_n v, n: one phase's part."""
    n = torch.tensor(float(v.shape[0]), dtype=v.dtype, device=v.device)
    return {"sums": p.T @ v, "counts": p.sum(0), "total": v.sum(0), "n": n}


def update_from_statistics(stats: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    """The CD update (ascent direction) from summed statistics ``{"data": ..., "model": ...}``."""
    d, m = stats["data"], stats["model"]
    return {
        "W": d["sums"] / d["n"] - m["sums"] / m["n"],
        "b": d["total"] / d["n"] - m["total"] / m["n"],
        "c": d["counts"] / d["n"] - m["counts"] / m["n"],
    }


def add_statistics(parts: list[dict[str, dict[str, Tensor]]]) -> dict[str, dict[str, Tensor]]:
    """Elementwise sum of several workers' statistics (what the parameter server does)."""
    return {ph: {k: sum(p[ph][k] for p in parts) for k in parts[0][ph]} for ph in PHASES}


class SoftmaxRBM(RBMBase):
    """K-state softmax hidden unit, Gaussian visibles (unit variance).

    Parameters
    ----------
    n_visible : D.
    n_states : K.
    config : CD-k / PCD settings (sparsity does not apply: the softmax fixes the total activity).
    update, generator, device, dtype : as for :class:`models.rbm.dense.GaussianBernoulliRBM`.
    """

    visible = "gaussian"

    def __init__(
        self,
        n_visible: int,
        n_states: int,
        *,
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if n_visible < 1 or n_states < 2:
            raise ValueError(f"n_visible={n_visible} must be >= 1 and n_states={n_states} >= 2")
        if config is not None and config.sparsity_target is not None:
            raise ValueError("SoftmaxRBM takes no sparsity_target: one state is always on")
        update = visible_update("gaussian", update)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        self.n_visible, self.n_states = n_visible, n_states
        self.params = self._dense_params(n_visible, n_states)  # W (K, D), b (D,), c (K,)

    @torch.no_grad()
    def init_from_data(self, v: Tensor, pick: Tensor | None = None) -> None:
        """Start each state's mean ``b + W_k`` at a distinct row of ``v`` (N >= K, D): rows
        ``pick`` (K,), or random ones; ``b`` the mean of all of ``v`` and equal prior weights,
        ``c_k = -W_k . b - |W_k|^2 / 2`` (then P(h = k | v) is softmax(-|v - b - W_k|^2 / 2):
        the nearest mean wins). Like k-means seeded from data, this keeps every state near the
        data from the first step."""
        v = self.as_input(v)
        if v.shape[0] < self.n_states:
            raise ValueError(f"init_from_data needs >= {self.n_states} rows, got {v.shape[0]}")
        if pick is None:
            pick = torch.randperm(v.shape[0], generator=self.generator, device=v.device)
        b = v.mean(0)
        W = v[pick[: self.n_states]] - b  # (K, D)
        self.params["b"].copy_(b)
        self.params["W"].copy_(W)
        self.params["c"].copy_(-(W @ b) - 0.5 * W.square().sum(1))

    def _hidden_input(self, v: Tensor) -> Tensor:
        """c_k + W_k . v: (N, K), each state's own response."""
        return torch.addmm(self.params["c"], v, self.params["W"].t())

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = b + h W."""
        return torch.addmm(self.params["b"], h, self.params["W"])

    def _state_mean(self, state: Tensor) -> Tensor:
        """:meth:`_visible_mean` of the one-hot rows of ``state`` (N,) (indices in [0, K)):
        ``b + W_k`` of each row's state, a gather of rows instead of an (N, K) x (K, D) product
        (the same values)."""
        return self.params["W"].index_select(0, state).add_(self.params["b"])

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """v ~ N(mean, I)."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise.add_(mean)

    @torch.no_grad()
    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = k | v) = softmax_k(c_k + W_k . v): (N, K)."""
        return torch.softmax(self._hidden_input(self.as_input(v)), 1)

    @torch.no_grad()
    def sample_hiddens(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One-hot h ~ P(h | v)."""
        return categorical_sample(self.mean_hiddens(v), generator or self.generator)

    @torch.no_grad()
    def responses(self, v: Tensor) -> Tensor:
        """Each unit's own response c_k + W_k . v (before the softmax): (N, K)."""
        return self._hidden_input(self.as_input(v))

    @torch.no_grad()
    def statistics(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, dict[str, Tensor]]:
        """Sums and counts of the data and of a CD-k / PCD-k chain: what a worker pushes."""
        g = generator or self.generator
        v0 = self.as_input(v)
        p0 = torch.softmax(self._hidden_input(v0), 1)
        if self.config.persistent and self.chain_h is not None:
            state = self.chain_h.argmax(1)
        else:
            state = categorical_index(p0, g)
            if self.config.persistent and self.config.n_chains is not None:
                state = self._resize_chain(state, self.config.n_chains)
        for step in range(self.config.k):
            vk = self._sample_visible(self._state_mean(state), g)
            pk = torch.softmax(self._hidden_input(vk), 1)
            if self.config.persistent or step < self.config.k - 1:
                state = categorical_index(pk, g)
        if self.config.persistent:  # kept one-hot, as every RBM's chain_h is
            self.chain_h = F.one_hot(state, self.n_states).to(p0.dtype)
        return {"data": phase_statistics(v0, p0), "model": phase_statistics(vk, pk)}

    @torch.no_grad()
    def compute_update(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """CD-k update of the batch ``v`` (N, D): :func:`update_from_statistics` of one worker."""
        return update_from_statistics(self.statistics(v, generator=generator))

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible of E[v | P(h|v)]."""
        v = self.as_input(v)
        recon = self._visible_mean(torch.softmax(self._hidden_input(v), 1))
        return (recon - v).square().mean()

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = |v - b|^2 / 2 - logsumexp_k(c_k + W_k . v); shape (N,)."""
        v = self.as_input(v)
        quad = 0.5 * (v - self.params["b"]).square().sum(1)
        return quad - torch.logsumexp(self._hidden_input(v), 1)
