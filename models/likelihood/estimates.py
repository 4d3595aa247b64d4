"""Likelihood of RBMs: exact partition function by enumeration, AIS, pseudo-likelihood, gaps.

- :func:`log_partition_exact` enumerates the smaller layer (up to ``max_units`` = 25 units):
  summing over hidden states h analytically integrates the visibles,
  ``log Z = logsumexp_h [c.h + sum_i softplus(b_i + (h W)_i)]`` (Bernoulli visibles) or the
  Gaussian integral (Gaussian visibles); summing over visible states uses ``-F(v)``.
- :func:`log_partition_ais` is annealed importance sampling (Neal 2001) as in Salakhutdinov &
  Murray (2008), "On the quantitative analysis of deep belief networks", ICML: the base-rate
  model (zero weights, visible biases fit to the marginals of the training data, or by default
  of the RBM's own Gibbs samples, :func:`model_samples`) annealed to the RBM through
  intermediate distributions ``p_beta(v) ~ exp((1 - beta) b_A.v + beta b.v) prod_j (1 +
  exp(beta (c_j + W_j.v)))`` with Gibbs transitions; returns ``(log Z, standard error)``.
  A forward AIS estimate cannot report its own failure:
  :func:`models.likelihood.ais_bracket.ais_bracket` adds reverse AIS, the other side of a bracket
  around log Z.
- :func:`pseudo_log_likelihood`: ``sum_i log P(v_i | v_-i)`` computed exactly over every bit
  (scikit-learn's ``score_samples`` draws one random bit per sample and scales by n_features).
- :func:`free_energy_gap`: mean F(held-out) - mean F(train) (Hinton's guide section 6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels.threads import cpu_threads
from models.rbm.dense import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    RBMBase,
    bernoulli_sample,
    device_generator,
)

MAX_UNITS = 25
_CHUNK = 1 << 15


def _binary_states(start: int, stop: int, n: int, *, device, dtype) -> Tensor:
    """Rows start..stop-1 of all 2^n binary vectors (bit i of index = unit i); (S, n)."""
    idx = torch.arange(start, stop, device=device, dtype=torch.int64)
    bits = torch.arange(n, device=device, dtype=torch.int64)
    return ((idx[:, None] >> bits[None, :]) & 1).to(dtype)


def _dense_params(rbm: RBMBase, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(W, b, c) in ``dtype`` (float64 for enumeration)."""
    p = rbm.params
    return p["W"].to(dtype), p["b"].to(dtype), p["c"].to(dtype)


@torch.no_grad()
def log_partition_exact(rbm: RBMBase, *, max_units: int = MAX_UNITS) -> float:
    """Exact log Z by enumerating the smaller layer (float64, chunked).

    Parameters
    ----------
    rbm : a :class:`BernoulliRBM` or :class:`GaussianBernoulliRBM` (the hidden layer is always
        enumerable), or any RBM with binary visibles small enough to enumerate its visibles.
    max_units : refuse to enumerate more than ``2 ** max_units`` states.

    Raises
    ------
    ValueError : both layers exceed ``max_units`` (use :func:`log_partition_ais`).
    """
    n_h, n_v = rbm.n_hidden, rbm.n_visible
    dense = isinstance(rbm, (BernoulliRBM, GaussianBernoulliRBM))
    gaussian = rbm.visible == "gaussian"
    over_hidden = dense and (gaussian or n_h <= n_v)
    n = n_h if over_hidden else n_v
    if n > max_units or (gaussian and not dense):
        raise ValueError(
            f"exact log Z needs enumerating 2^{n} states (n_visible={n_v}, n_hidden={n_h}); "
            f"the limit is 2^{max_units}. Use log_partition_ais for larger models."
        )
    dt = torch.float64
    dev = rbm.device
    total = torch.tensor(-math.inf, device=dev, dtype=dt)
    if over_hidden:
        W, b, c = _dense_params(rbm, dt)
        if gaussian:
            sigma = rbm.params["log_sigma"].to(dt).exp() if rbm.learn_sigma else torch.ones_like(b)
            const = (torch.log(sigma) + 0.5 * math.log(2 * math.pi)).sum()
        for start in range(0, 1 << n, _CHUNK):
            h = _binary_states(start, min(1 << n, start + _CHUNK), n, device=dev, dtype=dt)
            a = h @ W  # (S, n_visible)
            if gaussian:
                terms = h @ c + (a * (b / sigma)).sum(1) + 0.5 * a.square().sum(1)
            else:
                terms = h @ c + F.softplus(a + b).sum(1)
            total = torch.logaddexp(total, torch.logsumexp(terms, 0))
        return float(total + const) if gaussian else float(total)
    shape = getattr(rbm, "in_shape", (n_v,))
    for start in range(0, 1 << n, _CHUNK):
        v = _binary_states(start, min(1 << n, start + _CHUNK), n, device=dev, dtype=rbm.dtype)
        neg_f = -rbm.free_energy(v.reshape(-1, *shape)).to(dt)
        total = torch.logaddexp(total, torch.logsumexp(neg_f, 0))
    return float(total)


@torch.no_grad()
def log_likelihood(rbm: RBMBase, v: Tensor, *, log_z: float | None = None) -> Tensor:
    """log P(v) = -F(v) - log Z per sample, (N,); exact log Z unless ``log_z`` is given."""
    if log_z is None:
        log_z = log_partition_exact(rbm)
    return -rbm.free_energy(v).to(torch.float64) - log_z


def ais_betas(n_betas: int = 14500) -> Tensor:
    """Salakhutdinov & Murray's schedule: 1/29 of the steps on [0, 0.5), 8/29 on [0.5, 0.9),
    20/29 on [0.9, 1] (500 / 4000 / 10000 for the default 14500)."""
    n1 = max(1, round(n_betas * 500 / 14500))
    n2 = max(1, round(n_betas * 4000 / 14500))
    n3 = max(2, n_betas - n1 - n2)
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
            torch.linspace(0.9, 1.0, n3, dtype=torch.float64),
        ]
    )


@torch.no_grad()
def model_samples(rbm: BernoulliRBM, n: int, *, steps: int = 1000,
                  generator: torch.Generator | None = None) -> Tensor:
    """n samples of the RBM from ``steps`` sweeps of block Gibbs sampling (v -> h -> v) started
    at uniform random visibles; (n, n_visible) binary, in the RBM's dtype."""
    g = device_generator(generator if generator is not None else rbm.generator, rbm.device)
    W, b, c = rbm.params["W"], rbm.params["b"], rbm.params["c"]
    v = bernoulli_sample(torch.full((n, rbm.n_visible), 0.5, device=rbm.device,
                                    dtype=rbm.dtype), g)
    for _ in range(steps):
        h = bernoulli_sample(torch.sigmoid_(torch.addmm(c, v, W.t())), g)
        v = bernoulli_sample(torch.sigmoid_(torch.addmm(b, h, W)), g)
    return v


def base_rate_bias(data: Tensor | None, n_visible: int, *, device, dtype) -> Tensor:
    """Visible biases of the base-rate model: log-odds of the smoothed data marginals (or 0)."""
    if data is None:
        return torch.zeros(n_visible, device=device, dtype=dtype)
    x = torch.as_tensor(data).to(device=device, dtype=dtype).reshape(-1, n_visible)
    n = x.shape[0]
    p = (x.sum(0) + 0.5) / (n + 1.0)  # add-half smoothing keeps the log-odds finite
    return torch.log(p) - torch.log1p(-p)


@torch.no_grad()
def log_partition_ais(
    rbm: BernoulliRBM,
    *,
    data: Tensor | None = None,
    n_runs: int = 250,
    betas: Tensor | int = 14500,
    generator: torch.Generator | None = None,
    num_threads: int | None = 1,
    base_rate: Tensor | None = None,
) -> tuple[float, float]:
    """Annealed importance sampling estimate of log Z (Salakhutdinov & Murray 2008).

    Parameters
    ----------
    rbm : a dense binary :class:`BernoulliRBM`.
    data : training data for the base-rate model's visible biases. ``None`` (the default) fits
        them to ``n_runs`` samples of the RBM itself (:func:`model_samples`), never a uniform
        base model: on a peaked model that one lands nats low with a small standard error.
    n_runs : independent AIS runs (importance weights). The error on trained models is
        dominated by the weights' variance, so more runs help where more temperatures do not
        (benchmarks/rbm.py, ``ais``).
    betas : inverse temperatures from 0 to 1 (a tensor), or their number for :func:`ais_betas`.
    generator : random source (on the rbm's device, or a seed source for one there).
    base_rate : the base model's visible biases (n_visible,), when already computed (overrides
        ``data``).
    num_threads : CPU threads during the run, restored afterwards (``None`` leaves them). The
        per-step matmuls are tiny (n_runs x n_visible x n_hidden): the thread hand-off of 2+
        threads costs more than the product.

    Returns
    -------
    (log_z, stderr) : the estimate ``log Z_A + log mean(w)`` and the delta-method standard error
        of the log estimate, ``std(w) / (sqrt(n_runs) mean(w))``. The estimate is unbiased in Z,
        so in log space it errs low rather than high.
    """
    if not isinstance(rbm, BernoulliRBM):
        raise TypeError(
            f"log_partition_ais supports dense BernoulliRBM, got {type(rbm).__name__}; "
            "use log_partition_exact for small models"
        )
    if n_runs < 2:
        raise ValueError(f"n_runs={n_runs} must be >= 2 (the standard error needs two runs)")
    with cpu_threads(num_threads if rbm.device.type == "cpu" else None):
        if base_rate is None:
            g = device_generator(generator if generator is not None else rbm.generator,
                                 rbm.device)
            base = data if data is not None else model_samples(rbm, n_runs, generator=g)
            base_rate = base_rate_bias(base, rbm.n_visible, device=rbm.device,
                                       dtype=torch.float64)
            generator = g
        return _ais(rbm, base_rate, n_runs, betas, generator)


def _ais(rbm, b_a, n_runs, betas, generator) -> tuple[float, float]:
    """AIS loop: w = prod_k p*_k(x_k) / p*_{k-1}(x_k), x_{k+1} ~ T_k(x_k) (Neal 2001).

    x is the smaller layer; the other one is summed out of p*_k analytically.
    """
    dt = torch.float64
    dev = rbm.device
    g = generator if generator is not None else rbm.generator
    g = device_generator(g, dev)
    schedule = ais_betas(betas) if isinstance(betas, int) else torch.as_tensor(betas, dtype=dt)
    if schedule[0] != 0 or schedule[-1] != 1:
        raise ValueError("betas must start at 0 and end at 1")
    beta_list = schedule.tolist()  # python floats: one host copy, none in the loop
    W, b, c = _dense_params(rbm, dt)
    b_a = b_a.to(device=dev, dtype=dt)
    log_z_a = float(F.softplus(b_a).sum()) + rbm.n_hidden * math.log(2.0)

    log_w = torch.zeros(n_runs, device=dev, dtype=dt)
    beta_prev = 0.0
    if rbm.n_hidden < rbm.n_visible:
        # Importance weights on the hidden side (the visibles summed out analytically):
        # log p*_beta(h) = beta c.h + sum_i softplus((1 - beta) b_A,i + beta (b_i + (h W)_i)).
        # p_0(h) is uniform; a weight then lives in 2^n_hidden states, far lower variance.
        h = bernoulli_sample(torch.full((n_runs, rbm.n_hidden), 0.5, device=dev, dtype=dt), g)
        a = torch.addmm(b, h, W)  # (M, n_visible): b + h W
        ch = h @ c
        sp_prev = F.softplus(b_a).sum().expand(n_runs)
        for beta in beta_list[1:]:
            vis_in = a * beta + b_a * (1.0 - beta)
            sp = F.softplus(vis_in).sum(1)
            log_w += (beta - beta_prev) * ch + sp - sp_prev
            # Gibbs transition at beta: v | h, then h | v
            v = bernoulli_sample(torch.sigmoid_(vis_in), g)
            h = bernoulli_sample(torch.sigmoid_(torch.addmm(c, v, W.t()).mul_(beta)), g)
            a = torch.addmm(b, h, W)
            ch = h @ c
            sp_prev = F.softplus(a * beta + b_a * (1.0 - beta)).sum(1)
            beta_prev = beta
    else:
        db = b - b_a
        v = bernoulli_sample(torch.sigmoid(b_a).expand(n_runs, -1), g)  # (M, n_visible)
        x = torch.addmm(c, v, W.t())  # (M, n_hidden)
        sp_prev = F.softplus(0.0 * x).sum(1)
        for beta in beta_list[1:]:
            sp = F.softplus(beta * x).sum(1)
            log_w += (beta - beta_prev) * (v @ db) + sp - sp_prev  # log p*_k(v) - log p*_{k-1}
            # Gibbs transition leaving p_beta invariant
            h = bernoulli_sample(torch.sigmoid(beta * x), g)
            vis_in = torch.addmm(b, h, W).mul_(beta).add_(b_a, alpha=1.0 - beta)
            v = bernoulli_sample(torch.sigmoid_(vis_in), g)
            x = torch.addmm(c, v, W.t())
            sp_prev = F.softplus(beta * x).sum(1)
            beta_prev = beta
    log_mean_w = torch.logsumexp(log_w, 0) - math.log(n_runs)
    r = torch.exp(log_w - log_w.max())
    stderr = float(r.std() / (math.sqrt(n_runs) * r.mean()))
    return log_z_a + float(log_mean_w), stderr


@torch.no_grad()
def pseudo_log_likelihood(
    rbm: RBMBase, v: Tensor, *, chunk: int = 256, per_unit: bool = False
) -> Tensor:
    """Exact pseudo-log-likelihood per sample: sum_i log P(v_i | v_-i), (N,) float64.

    With ``per_unit=True`` the terms are returned unsummed, (N, n_visible).

    ``log P(v_i | v_-i) = -softplus(F(v) - F(v with bit i flipped))`` for binary visibles
    (Besag 1975). Every bit is flipped (no sampling), so the value is deterministic; a dense
    RBM uses the closed form of the flipped hidden input, others call ``free_energy`` per flip.
    """
    if rbm.visible != "bernoulli":
        raise TypeError("pseudo_log_likelihood needs binary visibles")
    v = rbm.as_input(v)
    out = []
    if isinstance(rbm, BernoulliRBM):
        W, b, c = _dense_params(rbm, torch.float64)
        for start in range(0, v.shape[0], chunk):
            vc = v[start : start + chunk].to(torch.float64)  # (n, V)
            x = torch.addmm(c, vc, W.t())  # (n, H)
            sign = 1.0 - 2.0 * vc  # +1 where the flip turns a 0 on, -1 where it turns a 1 off
            x_flip = x[:, None, :] + sign[:, :, None] * W.t()[None]  # (n, V, H)
            # F(v_flip) - F(v) = -sign_i b_i - sum_j [softplus(x_flip) - softplus(x)]
            d = -sign * b - (F.softplus(x_flip).sum(2) - F.softplus(x).sum(1, keepdim=True))
            out.append(-F.softplus(-d))  # log sigmoid(d) = log P(v_i | v_-i), (n, V)
        terms = torch.cat(out)
        return terms if per_unit else terms.sum(1)
    flat = v.reshape(v.shape[0], -1)
    fe = rbm.free_energy(v).to(torch.float64)
    terms = torch.zeros(flat.shape, dtype=torch.float64, device=v.device)
    for i in range(flat.shape[1]):  # one free energy per visible unit (small models only)
        flipped = flat.clone()
        flipped[:, i] = 1.0 - flipped[:, i]
        d = rbm.free_energy(flipped.reshape(v.shape)).to(torch.float64) - fe
        terms[:, i] = -F.softplus(-d)
    return terms if per_unit else terms.sum(1)


@torch.no_grad()
def free_energy_gap(rbm: RBMBase, train: Tensor, held_out: Tensor) -> float:
    """mean F(held_out) - mean F(train): grows when the model overfits (Hinton 2010, sec. 6)."""
    return float(rbm.free_energy(held_out).mean() - rbm.free_energy(train).mean())
