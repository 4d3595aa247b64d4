"""Dense restricted Boltzmann machines: Bernoulli-Bernoulli and Gaussian-Bernoulli.

Energies (Hinton 2010, "A Practical Guide to Training Restricted Boltzmann Machines", UTML TR
2010-003; Gaussian visibles as in Hinton & Salakhutdinov 2006 and Cho et al. 2011)::

    Bernoulli:  E(v, h) = -b.v - c.h - h.W.v
    Gaussian:   E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - c.h - h.W.(v / sigma)

Free energies use softplus, so no input overflows:

    F(v) = -b.v - sum_j softplus(c_j + W_j.v)                         (Bernoulli)
    F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(c_j + W_j.(v / sigma))

Training follows contrastive divergence (CD-k, Hinton 2002) or persistent CD (Tieleman 2008);
each step is split into :meth:`compute_update` (the gradient estimate, on a worker) and
:meth:`apply_update` (the optimiser, on a parameter server), see ``models.rbm.optim``.
Parameters live in ``rbm.params`` as plain tensors: ``W (n_hidden, n_visible)`` (scikit-learn's
``components_`` layout), ``b (n_visible,)`` visible bias, ``c (n_hidden,)`` hidden bias, and for
a Gaussian RBM with learned variance ``log_sigma (n_visible,)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels import counter_rng
from models.rbm.cd import CDStep, contrastive_divergence
from models.rbm.optim import ParameterUpdater, UpdateConfig


@dataclass(frozen=True)
class RBMConfig:
    """Sampling and regularisation settings of one RBM (Hinton's guide defaults).

    Attributes
    ----------
    k : Gibbs steps per update (CD-k / PCD-k).
    persistent : persistent CD (Tieleman 2008): the negative chain carries over between updates.
    n_chains : number of persistent chains; ``None`` = the first batch's size.
    sparsity_target : target mean activation of each hidden unit (Lee et al. 2008; Hinton's guide
        section 11), ``None`` for no sparsity term.
    sparsity_cost : weight of the sparsity term, added to the hidden-bias update.
    sparsity_decay : decay of the running estimate ``q`` of each unit's mean activation.
    init_std : weights start as N(0, init_std^2) (0.01 in the guide).
    check_interval : parameters are checked for divergence every ``check_interval`` applied updates
        (a host-device sync, so not every step).
    """

    k: int = 1
    persistent: bool = False
    n_chains: int | None = None
    sparsity_target: float | None = None
    sparsity_cost: float = 0.1
    sparsity_decay: float = 0.9
    init_std: float = 0.01
    check_interval: int = 100

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k={self.k} must be >= 1")
        if self.n_chains is not None and self.n_chains < 1:
            raise ValueError(f"n_chains={self.n_chains} must be >= 1 or None")
        if self.sparsity_target is not None and not 0.0 < self.sparsity_target < 1.0:
            raise ValueError(f"sparsity_target={self.sparsity_target} must be in (0, 1) or None")
        if not 0.0 <= self.sparsity_decay < 1.0:
            raise ValueError(f"sparsity_decay={self.sparsity_decay} must be in [0, 1)")
        if self.init_std < 0:
            raise ValueError(f"init_std={self.init_std} must be >= 0")
        if self.check_interval < 1:
            raise ValueError(f"check_interval={self.check_interval} must be >= 1")


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``"auto"`` (or None) -> :func:`default_device`; anything else as ``torch.device``. One
    spelling of "choose for me" from the configs to the models."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator on ``device``: ``generator`` itself if it lives there, else seeded from it."""
    if generator is not None and torch.device(generator.device).type == device.type:
        return generator
    seed = (
        int(torch.randint(0, 2**62, (1,), generator=generator).item())
        if generator is not None
        else int(torch.seed() % 2**62)
    )
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def bernoulli_sample(p: Tensor, generator: torch.Generator) -> Tensor:
    """1 where u < p for u ~ U[0, 1) (NaN p gives 0, so divergence surfaces in check_finite).

    On CPU the uniforms come from the counter-based generator of :mod:`models.kernels.counter_rng`
    (keyed by one draw from ``generator``; parallel, where torch's Mersenne Twister is serial);
    elsewhere from ``torch.rand``.
    """
    if counter_rng.use_numba(p, p):
        return counter_rng.bernoulli_(torch.empty_like(p), p, generator)
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return u.lt_(p)


def visible_update(visible: str, update: UpdateConfig | None) -> UpdateConfig | None:
    """Check ``visible`` and give Gaussian visibles their default step: 1-2 orders of magnitude
    below the binary rate (Hinton 2010, section 13.2), since their inputs are unbounded."""
    if visible not in ("bernoulli", "gaussian"):
        raise ValueError(f"visible={visible!r} must be 'bernoulli' or 'gaussian'")
    if update is None and visible == "gaussian":
        return UpdateConfig(learning_rate=0.001)
    return update


class RBMBase:
    """Shared machinery: CD-k / PCD chains, sparsity, update split, divergence checks, state.

    Subclasses define the model through hooks: ``_up`` (total input to the hidden units, plus
    whatever the gradient needs of v, e.g. unfolded patches), ``_visible_mean`` and
    ``_sample_visible`` (P(v|h)), ``_gradient`` (positive minus negative sufficient statistics),
    ``_hidden_batch_mean`` and ``free_energy``.
    """

    decay_names: tuple[str, ...] = ("W",)
    visible: str = "bernoulli"

    def __init__(
        self,
        *,
        config: RBMConfig | None,
        update: UpdateConfig | None,
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype,
    ) -> None:
        self.config = config if config is not None else RBMConfig()
        self.update_config = update if update is not None else UpdateConfig()
        self.device = resolve_device(device)
        self.dtype = dtype
        self.generator = device_generator(generator, self.device)
        self.updater = ParameterUpdater(self.update_config, self.decay_names)
        self.params: dict[str, Tensor] = {}
        self.chain_h: Tensor | None = None  # persistent negative chain (hidden samples)
        self.q: Tensor | None = None  # running mean hidden activity (sparsity)
        self.n_updates = 0

    # ----------------------------------------------------------------- model hooks
    def _hidden_input(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _up(self, v: Tensor, slot: int | None = None) -> tuple[Tensor, Tensor]:
        """(hidden input, what ``_gradient`` needs of v); dense RBMs need v itself.

        ``slot`` is 0 for the data and 1 for the negative sample inside ``compute_update``
        (a subclass may write into a reused workspace), ``None`` elsewhere.
        """
        return self._hidden_input(v), v

    def _begin_step(self, n_data: int, n_negative: int) -> None:
        """Hook before a CD step's passes (a subclass sizes its workspace here)."""

    def _chain_rows(self, chain: Tensor) -> int:
        """Number of persistent chains held in ``chain`` (batch dim 0)."""
        return chain.shape[0]

    def _visible_mean(self, h: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """v ~ Bernoulli(mean) (binary visibles)."""
        return bernoulli_sample(mean, generator)

    def _gradient(self, v0: Tensor, p0: Tensor, vk: Tensor, pk: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _hidden_batch_mean(self, p: Tensor) -> Tensor:
        """Mean hidden activity over the batch, shaped like ``c``."""
        return p.mean(0)

    def free_energy(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ----------------------------------------------------------------- public API
    def as_input(self, v: Tensor) -> Tensor:
        """Move to the model's device and dtype (no copy when already there; never in place)."""
        return torch.as_tensor(v).to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def mean_hiddens(self, v: Tensor) -> Tensor:
        """P(h = 1 | v) = sigmoid(c + W v)."""
        return torch.sigmoid(self._hidden_input(self.as_input(v)))

    @torch.no_grad()
    def sample_hiddens(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """h ~ P(h | v)."""
        return bernoulli_sample(self.mean_hiddens(v), generator or self.generator)

    @torch.no_grad()
    def mean_visibles(self, h: Tensor) -> Tensor:
        """E[v | h]."""
        return self._visible_mean(self.as_input(h))

    @torch.no_grad()
    def sample_visibles(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """v ~ P(v | h)."""
        return self._sample_visible(self.mean_visibles(h), generator or self.generator)

    @torch.no_grad()
    def gibbs(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One Gibbs step v -> h -> v'."""
        g = generator or self.generator
        return self.sample_visibles(self.sample_hiddens(v, g), g)

    @torch.no_grad()
    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit of the mean-field reconstruction E[v | P(h|v)]."""
        v = self.as_input(v)
        recon = self._visible_mean(torch.sigmoid(self._hidden_input(v)))
        return (recon - v).square().mean()

    @torch.no_grad()
    def compute_update(
        self, v: Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """CD-k / PCD-k estimate of the mean log-likelihood gradient over the batch ``v``.

        Positive statistics use P(h|v) of the data, negative statistics use the k-th Gibbs
        sample v_k and P(h|v_k); each is averaged over its own number of rows (the persistent
        chains may differ in number from the batch). With a sparsity target the hidden-bias
        update gets ``sparsity_cost * (target - q)`` where ``q`` is a running mean of P(h|v).
        Does not change ``params`` (the persistent chain and ``q`` do advance). The chain is
        :func:`models.rbm.cd.contrastive_divergence` over this model's hooks.
        """
        v0 = self.as_input(v)
        step = contrastive_divergence(
            _Hooks(self),
            v0,
            chain=self.chain_h,
            n_negative=self.negative_rows(v0.shape[0]),
            cd=self.config,
            generator=generator or self.generator,
        )
        return self.record_step(step)

    def record_step(self, step: CDStep) -> dict[str, Tensor]:
        """Keep what a CD step leaves behind: the persistent chains' new state and, with a
        sparsity target, the sparsity term added to the update (:meth:`add_sparsity`).
        Returns the update."""
        if self.config.persistent:
            self.chain_h = step.chain
        if self.config.sparsity_target is not None:
            self.add_sparsity(step.update, step.mean_p0)
        return step.update

    def negative_rows(self, n0: int) -> int:
        """Rows of the negative phase: the batch (CD), the running chains, or ``n_chains``."""
        cfg = self.config
        if not cfg.persistent:
            return n0
        if self.chain_h is not None:
            return self._chain_rows(self.chain_h)
        return cfg.n_chains or n0

    def add_sparsity(self, update: dict[str, Tensor], mean_p: Tensor) -> None:
        """Advance the running mean ``q`` of P(h|v) by the batch mean ``mean_p`` and add
        ``sparsity_cost * (target - q)`` to the hidden-bias update (Hinton 2010, section 11)."""
        cfg = self.config
        if self.q is None:
            self.q = mean_p.clone()
        else:
            self.q.mul_(cfg.sparsity_decay).add_(mean_p, alpha=1.0 - cfg.sparsity_decay)
        update["c"].add_(cfg.sparsity_target - self.q, alpha=cfg.sparsity_cost)

    def _resize_chain(self, h: Tensor, n: int) -> Tensor:
        """Repeat rows (batch dim 0) of ``h`` to ``n`` chains."""
        idx = torch.arange(n, device=h.device) % h.shape[0]
        return h.index_select(0, idx)

    def apply_update(self, update: dict[str, Tensor]) -> None:
        """``self.updater.step(self.params, update)``, with a divergence check every
        ``config.check_interval`` calls.

        Raises
        ------
        FloatingPointError : a parameter became NaN/inf (the run diverged).
        """
        self.updater.step(self.params, update)
        self.n_updates += 1
        if self.n_updates % self.config.check_interval == 0:
            self.check_finite()

    def count_updates(self, n: int = 1) -> None:
        """Count ``n`` updates that a fused step applied to ``params`` in place (as
        :meth:`apply_update` counts its own): the update and optimiser step counters advance,
        and the divergence check runs when a ``config.check_interval`` boundary is crossed."""
        before = self.n_updates
        self.n_updates += n
        self.updater.step_count += n
        every = self.config.check_interval
        if self.n_updates // every > before // every:
            self.check_finite()

    @torch.no_grad()
    def _dense_params(self, n_visible: int, n_hidden: int) -> dict[str, Tensor]:
        """W ~ N(0, init_std^2) (n_hidden, n_visible), zero biases b (visible) and c (hidden)."""
        kw = {"device": self.device, "dtype": self.dtype}
        W = torch.randn(n_hidden, n_visible, generator=self.generator, **kw)
        return {
            "W": W.mul_(self.config.init_std),  # (n_hidden, n_visible)
            "b": torch.zeros(n_visible, **kw),
            "c": torch.zeros(n_hidden, **kw),
        }

    def check_finite(self) -> None:
        """Raise FloatingPointError naming the fix if any parameter is NaN or infinite.

        One host-device sync (a single reduction over all parameters).
        """
        flags = torch.stack([torch.isfinite(p).all() for p in self.params.values()])
        if bool(flags.all()):  # sync point
            return
        bad = [n for n, ok in zip(self.params, flags.tolist(), strict=True) if not ok]
        lr = self.update_config.learning_rate
        hint = (
            "Gaussian visibles need a learning rate 1-2 orders of magnitude lower than binary "
            "ones and inputs scaled to zero mean, unit variance (e.g. contrast-normalised)"
            if self.visible == "gaussian"
            else "lower the learning rate or the momentum"
        )
        raise FloatingPointError(
            f"{type(self).__name__} diverged after {self.n_updates} updates: parameters {bad} "
            f"are not finite. Lower learning_rate (now {lr}, try {lr / 10:g}); {hint}."
        )

    def state_dict(self) -> dict:
        """Parameters, optimiser state, persistent chain and sparsity estimate (not copied)."""
        return {
            "params": dict(self.params),
            "updater": self.updater.state_dict(),
            "chain_h": self.chain_h,
            "q": self.q,
            "n_updates": self.n_updates,
            "config": asdict(self.config),
            "update_config": asdict(self.update_config),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in place (shapes must match) and restore the rest."""
        for name, p in self.params.items():
            src = state["params"][name]
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(
                    f"state_dict param {name!r} has shape {tuple(src.shape)}, "
                    f"model expects {tuple(p.shape)} (was it saved from another geometry?)"
                )
            p.copy_(src)
        self.updater.load_state_dict(state["updater"])
        chain = state.get("chain_h")
        self.chain_h = None if chain is None else chain.to(self.device, self.dtype).clone()
        q = state.get("q")
        self.q = None if q is None else q.to(self.device, self.dtype).clone()
        self.n_updates = int(state.get("n_updates", 0))


class _Hooks:
    """An RBMBase's hooks as the :class:`models.rbm.cd.GibbsOps` of one CD step."""

    def __init__(self, rbm: RBMBase) -> None:
        self.rbm = rbm

    def begin_step(self, n_data: int, n_negative: int) -> None:
        self.rbm._begin_step(n_data, n_negative)

    def up(self, v: Tensor, slot: int) -> tuple[Tensor, Tensor]:
        return self.rbm._up(v, slot=slot)

    def sample_hidden(self, p: Tensor, generator: torch.Generator) -> Tensor:
        return bernoulli_sample(p, generator)

    def visible_mean(self, h: Tensor) -> Tensor:
        return self.rbm._visible_mean(h)

    def sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        return self.rbm._sample_visible(mean, generator)

    def gradient(self, a0: Tensor, p0: Tensor, ak: Tensor, pk: Tensor) -> dict[str, Tensor]:
        return self.rbm._gradient(a0, p0, ak, pk)

    def hidden_batch_mean(self, p: Tensor) -> Tensor:
        return self.rbm._hidden_batch_mean(p)

    def resize_chain(self, h: Tensor, n: int) -> Tensor:
        return self.rbm._resize_chain(h, n)


class BernoulliRBM(RBMBase):
    """Binary-binary RBM in torch (the core used by workers, stacks and the estimator).

    Parameters
    ----------
    n_visible, n_hidden : layer sizes.
    config : sampling / sparsity settings (:class:`RBMConfig`).
    update : optimiser settings (:class:`models.rbm.optim.UpdateConfig`).
    generator : seeds the weight initialisation and the sampling.
    device, dtype : where the parameters live (default CUDA if present, float32).

    References
    ----------
    Hinton, G. (2002). Training products of experts by minimizing contrastive divergence.
    Hinton, G. (2010). A Practical Guide to Training Restricted Boltzmann Machines.
    """

    visible = "bernoulli"

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if n_visible < 1 or n_hidden < 1:
            raise ValueError(f"n_visible={n_visible} and n_hidden={n_hidden} must be >= 1")
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        self.n_visible = n_visible
        self.n_hidden = n_hidden
        self.params = self._dense_params(n_visible, n_hidden)

    def _hidden_input(self, v: Tensor) -> Tensor:
        """c + v W^T, the total input of every hidden unit; (N, n_hidden)."""
        return torch.addmm(self.params["c"], v, self.params["W"].t())

    def _visible_mean(self, h: Tensor) -> Tensor:
        """P(v = 1 | h) = sigmoid(b + h W)."""
        return torch.sigmoid_(torch.addmm(self.params["b"], h, self.params["W"]))

    def _gradient(self, v0: Tensor, p0: Tensor, vk: Tensor, pk: Tensor) -> dict[str, Tensor]:
        """<h v^T>_data - <h v^T>_model (and the bias analogues), each a mean over its rows."""
        n0, nk = v0.shape[0], vk.shape[0]
        dW = torch.empty(p0.shape[1], v0.shape[1], device=v0.device, dtype=v0.dtype)
        torch.addmm(dW, p0.t(), v0, beta=0.0, alpha=1.0 / n0, out=dW)
        dW.addmm_(pk.t(), vk, alpha=-1.0 / nk)
        # batch means as matrix-vector products (contiguous reads, not strided column sums)
        w0 = torch.full((n0,), 1.0 / n0, device=v0.device, dtype=v0.dtype)
        wk = torch.full((nk,), -1.0 / nk, device=v0.device, dtype=v0.dtype)
        db = torch.mv(v0.t(), w0).addmv_(vk.t(), wk)
        dc = torch.mv(p0.t(), w0).addmv_(pk.t(), wk)
        return {"W": dW, "b": db, "c": dc}

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v - sum_j softplus(c_j + W_j.v); shape (N,)."""
        v = self.as_input(v)
        return -(v @ self.params["b"]) - F.softplus(self._hidden_input(v)).sum(1)


class GaussianBernoulliRBM(RBMBase):
    """Real-valued (Gaussian) visibles, binary hiddens, for contrast-normalised inputs.

    ``P(h_j = 1 | v) = sigmoid(c_j + W_j.(v / sigma))`` and
    ``P(v_i | h) = N(b_i + sigma_i (h W)_i, sigma_i^2)``.
    With ``learn_sigma=False`` (default) sigma is 1: inputs should be scaled to zero mean and unit
    variance (Hinton's guide section 13.2). With ``learn_sigma=True`` the parameter
    ``log_sigma`` is learned by CD as well (its gradient follows from the free energy).

    References
    ----------
    Hinton & Salakhutdinov (2006), Science 313; Cho, Ilin & Raiko (2011), ICANN; Hinton (2010).
    """

    visible = "gaussian"

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        learn_sigma: bool = False,
        config: RBMConfig | None = None,
        update: UpdateConfig | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if n_visible < 1 or n_hidden < 1:
            raise ValueError(f"n_visible={n_visible} and n_hidden={n_hidden} must be >= 1")
        update = visible_update("gaussian", update)
        super().__init__(
            config=config, update=update, generator=generator, device=device, dtype=dtype
        )
        self.n_visible = n_visible
        self.n_hidden = n_hidden
        self.learn_sigma = learn_sigma
        self.params = self._dense_params(n_visible, n_hidden)
        if learn_sigma:
            self.params["log_sigma"] = torch.zeros(n_visible, device=self.device, dtype=dtype)

    @property
    def sigma(self) -> Tensor | float:
        """Visible standard deviations (the float 1.0 when not learned)."""
        if self.learn_sigma:
            return self.params["log_sigma"].exp()
        return 1.0

    def _hidden_input(self, v: Tensor) -> Tensor:
        """c + (v / sigma) W^T; (N, n_hidden)."""
        if self.learn_sigma:
            v = v / self.sigma
        return torch.addmm(self.params["c"], v, self.params["W"].t())

    def _visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h] = b + sigma * (h W)."""
        if self.learn_sigma:
            return torch.addcmul(self.params["b"], h @ self.params["W"], self.sigma)
        return torch.addmm(self.params["b"], h, self.params["W"])

    def _sample_visible(self, mean: Tensor, generator: torch.Generator) -> Tensor:
        """v ~ N(mean, sigma^2)."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        if self.learn_sigma:
            noise.mul_(self.sigma)
        return noise.add_(mean)

    def _gradient(self, v0: Tensor, p0: Tensor, vk: Tensor, pk: Tensor) -> dict[str, Tensor]:
        """-dF/dtheta at the data minus at the model sample (means over rows)."""
        n0, nk = v0.shape[0], vk.shape[0]
        b = self.params["b"]
        if not self.learn_sigma:
            dW = torch.mm(p0.t(), v0).mul_(1.0 / n0)
            dW.addmm_(pk.t(), vk, alpha=-1.0 / nk)
            return {"W": dW, "b": v0.mean(0) - vk.mean(0), "c": p0.mean(0) - pk.mean(0)}
        sigma = self.sigma
        var = sigma.square()
        x0, xk = v0 / sigma, vk / sigma
        dW = torch.mm(p0.t(), x0).mul_(1.0 / n0)
        dW.addmm_(pk.t(), xk, alpha=-1.0 / nk)
        db = ((v0 - b).mean(0) - (vk - b).mean(0)) / var
        dc = p0.mean(0) - pk.mean(0)

        def neg_dF_dlogsigma(v: Tensor, x: Tensor, p: Tensor) -> Tensor:
            """-dF/d(log sigma_i) = (v_i - b_i)^2 / sigma_i^2 - (v_i / sigma_i) (p W)_i."""
            return ((v - b).square() / var - x * (p @ self.params["W"])).mean(0)

        ds = neg_dF_dlogsigma(v0, x0, p0) - neg_dF_dlogsigma(vk, xk, pk)
        return {"W": dW, "b": db, "c": dc, "log_sigma": ds}

    @torch.no_grad()
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(c_j + W_j.(v / sigma))."""
        v = self.as_input(v)
        quad = (v - self.params["b"]).square()
        if self.learn_sigma:
            quad = quad / self.sigma.square()
        return 0.5 * quad.sum(1) - F.softplus(self._hidden_input(v)).sum(1)
