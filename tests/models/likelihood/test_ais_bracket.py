"""Forward and reverse AIS bracket log Z, and the bracket flags a forward estimate that failed
(exact log Z by enumeration on small models)."""

from __future__ import annotations

import torch

from models.likelihood.ais_bracket import ais_bracket, exact_samples
from models.likelihood.estimates import log_partition_exact
from models.rbm.dense import BernoulliRBM


def _rugged(scale: float, seed: int = 0) -> BernoulliRBM:
    """16 visible x 20 hidden, N(0, scale^2) weights, biases centring each unit: many modes."""
    g = torch.Generator().manual_seed(seed)
    rbm = BernoulliRBM(16, 20, device="cpu", dtype=torch.float32, generator=g)
    with torch.no_grad():
        rbm.params["W"].copy_(torch.randn(20, 16, generator=g) * scale)
        rbm.params["b"].copy_(-0.5 * rbm.params["W"].sum(0))
        rbm.params["c"].copy_(-0.5 * rbm.params["W"].sum(1))
    return rbm


def test_a_failed_forward_estimate_is_flagged():
    rbm = _rugged(4.0)
    exact = log_partition_exact(rbm)
    br = ais_bracket(rbm, n_runs=50, betas=100, generator=torch.Generator().manual_seed(1))
    # forward AIS with too few temperatures lands nats low, and its own standard error hides it
    assert exact - br.lower > 2.0 and br.lower_stderr < 1.0, br
    assert br.exact_samples and br.lower < exact < br.upper, (exact, br)
    assert not br.ok and br.gap > 2.0


def test_an_adequate_schedule_closes_the_bracket():
    rbm = _rugged(2.0)
    exact = log_partition_exact(rbm)
    br = ais_bracket(rbm, n_runs=50, betas=1000, generator=torch.Generator().manual_seed(1))
    assert br.ok and abs(br.log_z - exact) < 0.5, (exact, br)


def test_exact_samples_follow_the_model():
    rbm = _rugged(1.0, seed=2)
    v = exact_samples(rbm, 20000, torch.Generator().manual_seed(0))
    # p(v_0 = 1) by enumerating the visibles (16 units): sum of exp(-F(v)) over v with v_0 = 1
    idx = torch.arange(1 << 16)
    states = ((idx[:, None] >> torch.arange(16)[None, :]) & 1).float()
    p = torch.softmax(-rbm.free_energy(states).double(), 0)
    marginal = (p[:, None] * states.double()).sum(0)
    assert torch.allclose(v.double().mean(0), marginal, atol=0.02)
