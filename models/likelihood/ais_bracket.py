"""A check on an AIS estimate of log Z: forward and reverse AIS bracket the true value.

Forward AIS (Neal 2001; Salakhutdinov & Murray 2008) starts from the base-rate model and anneals
to the RBM; its estimate of Z is unbiased, so its log is a *stochastic lower bound* on log Z
(Jensen), and when the chains never reach some of the RBM's modes it lands low while its
standard error, computed from the same chains, stays small: it cannot report its own failure.

Reverse AIS (Burda, Grosse & Salakhutdinov 2015, "Accurate and conservative estimates of MRF
log-likelihood using reverse annealing") runs the same schedule backwards from samples of the
RBM itself: the mean of its weights estimates Z_A / Z, so ``log Z_A - log mean(w)`` is a
stochastic *upper* bound on log Z when the starting samples are exact. Exact samples are drawn
here when the hidden layer can be enumerated (``n_hidden <= max_units``); otherwise long Gibbs
chains stand in (then the upper side is approximate).

:func:`ais_bracket` runs both; the two estimates agree when the annealing schedule is adequate,
and a gap of more than ``tolerance`` nats means neither should be trusted: use more
intermediate temperatures, more runs, or a better base rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.kernels.threads import cpu_threads
from models.likelihood.estimates import (
    MAX_UNITS,
    ais_betas,
    base_rate_bias,
    log_partition_ais,
    model_samples,
)
from models.rbm.dense import BernoulliRBM, bernoulli_sample, device_generator


@dataclass(frozen=True)
class AISBracket:
    """Forward (lower side) and reverse (upper side) AIS estimates of log Z.

    ``gap = upper - lower``; ``ok`` when ``gap <= tolerance`` (then ``log_z``, the midpoint,
    is within ``gap / 2`` of both). ``exact_samples`` says whether the reverse chains started
    from exact samples of the RBM (a true stochastic upper bound) or from Gibbs chains.
    """

    lower: float
    lower_stderr: float
    upper: float
    gap: float
    ok: bool
    exact_samples: bool

    @property
    def log_z(self) -> float:
        return 0.5 * (self.lower + self.upper)


def exact_samples(rbm: BernoulliRBM, n: int, generator: torch.Generator) -> Tensor:
    """n exact samples v ~ p(v) of a dense Bernoulli RBM by enumerating its hidden states:
    ``p(h) ~ exp(c.h + sum_i softplus(b_i + (W^T h)_i))``, then ``v ~ p(v | h)``; (n, V)."""
    dt = torch.float64
    W, b, c = (rbm.params[k].to(dt) for k in ("W", "b", "c"))
    n_h = rbm.n_hidden
    idx = torch.arange(1 << n_h, device=rbm.device)
    h_all = ((idx[:, None] >> torch.arange(n_h, device=rbm.device)[None, :]) & 1).to(dt)
    log_p = h_all @ c + F.softplus(h_all @ W + b).sum(1)  # (2^H,)
    pick = torch.multinomial(torch.softmax(log_p, 0).float(), n, replacement=True,
                             generator=generator)
    h = h_all[pick]  # (n, H)
    return bernoulli_sample(torch.sigmoid(h @ W + b), generator)


def _log_f(v: Tensor, x: Tensor, beta: float, b: Tensor, b_a: Tensor) -> Tensor:
    """log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta x_j), x = c + W v."""
    return v @ (b_a + beta * (b - b_a)) + F.softplus(beta * x).sum(1)


@torch.no_grad()
def reverse_ais(rbm: BernoulliRBM, start: Tensor, b_a: Tensor, betas: Tensor,
                generator: torch.Generator) -> Tensor:
    """Log-weights of reverse AIS from samples ``start`` (n, V) of the RBM down to the base
    model: ``w = prod_k p*_{k-1}(v_k) / p*_k(v_k)``, ``v_{k-1} ~ T_{k-1}(v_k)``; (n,).
    ``mean(w)`` estimates ``Z_A / Z``."""
    dt = torch.float64
    W, b, c = (rbm.params[k].to(dt) for k in ("W", "b", "c"))
    beta_list = betas.tolist()
    v = start.to(dt)
    log_w = torch.zeros(v.shape[0], device=v.device, dtype=dt)
    for k in range(len(beta_list) - 1, 0, -1):
        hi, lo = beta_list[k], beta_list[k - 1]
        x = torch.addmm(c, v, W.t())  # (n, H)
        log_w += _log_f(v, x, lo, b, b_a) - _log_f(v, x, hi, b, b_a)
        # Gibbs transition leaving p_lo invariant: h | v, then v | h
        h = bernoulli_sample(torch.sigmoid(lo * x), generator)
        vis_in = torch.addmm(b, h, W).mul_(lo).add_(b_a, alpha=1.0 - lo)
        v = bernoulli_sample(torch.sigmoid_(vis_in), generator)
    return log_w


@torch.no_grad()
def ais_bracket(rbm: BernoulliRBM, *, data: Tensor | None = None, n_runs: int = 100,
                betas: Tensor | int = 14500, tolerance: float = 1.0,
                generator: torch.Generator | None = None, max_units: int = 20,
                num_threads: int | None = 1) -> AISBracket:
    """Forward and reverse AIS on one schedule and one base rate (from ``data``, else from the
    RBM's own samples); see the module docstring. ``n_runs`` chains each way."""
    g = device_generator(generator if generator is not None else rbm.generator, rbm.device)
    schedule = ais_betas(betas) if isinstance(betas, int) else torch.as_tensor(betas)
    schedule = schedule.to(torch.float64)
    with cpu_threads(num_threads if rbm.device.type == "cpu" else None):
        base = data if data is not None else model_samples(rbm, n_runs, generator=g)
        b_a = base_rate_bias(base, rbm.n_visible, device=rbm.device, dtype=torch.float64)
        lower, stderr = log_partition_ais(rbm, base_rate=b_a, n_runs=n_runs, betas=schedule,
                                          generator=g, num_threads=None)
        exact = rbm.n_hidden <= min(max_units, MAX_UNITS)
        start = (exact_samples(rbm, n_runs, g) if exact
                 else model_samples(rbm, n_runs, generator=g))
        log_w = reverse_ais(rbm, start, b_a, schedule, g)
    log_z_a = float(F.softplus(b_a).sum()) + rbm.n_hidden * math.log(2.0)
    upper = log_z_a - float(torch.logsumexp(log_w, 0) - math.log(n_runs))
    gap = upper - lower
    return AISBracket(lower, stderr, upper, gap, gap <= tolerance, exact)
