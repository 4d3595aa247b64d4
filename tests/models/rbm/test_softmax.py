"""SoftmaxRBM against its energy: conditionals by enumeration, CD statistics against autograd."""

from __future__ import annotations

import pytest
import torch

from models.rbm.dense import RBMConfig
from models.rbm.softmax import (
    SoftmaxRBM,
    add_statistics,
    categorical_sample,
    update_from_statistics,
)
from tests.models.helpers import DT, gen, grad_of_free_energy, randomise


def energy(rbm, v, k):
    W, b, c = rbm.params["W"], rbm.params["b"], rbm.params["c"]
    return 0.5 * (v - b).square().sum() - c[k] - W[k] @ v


def test_conditionals_and_free_energy_equal_enumeration():
    rbm = randomise(SoftmaxRBM(4, 3, device="cpu", dtype=DT))
    v = torch.randn(5, 4, generator=gen(2), dtype=DT)
    for n in range(5):
        e = torch.stack([energy(rbm, v[n], k) for k in range(3)])
        torch.testing.assert_close(rbm.mean_hiddens(v)[n], torch.softmax(-e, 0))
        # F(v) = -log sum_h exp(-E(v, h))
        torch.testing.assert_close(rbm.free_energy(v)[n], -torch.logsumexp(-e, 0))
    h = torch.eye(3, dtype=DT)
    torch.testing.assert_close(rbm.mean_visibles(h), rbm.params["b"] + rbm.params["W"])
    one_hot = categorical_sample(rbm.mean_hiddens(v), gen(3))  # the gather the CD step uses
    assert torch.equal(rbm._state_mean(one_hot.argmax(1)), rbm._visible_mean(one_hot))


def test_statistics_give_minus_free_energy_gradient_and_add_over_workers():
    rbm = randomise(SoftmaxRBM(4, 3, device="cpu", dtype=DT))
    v0 = torch.randn(6, 4, generator=gen(1), dtype=DT)
    vk = torch.randn(5, 4, generator=gen(2), dtype=DT)
    from models.rbm.softmax import phase_statistics

    stats = {
        "data": phase_statistics(v0, rbm.mean_hiddens(v0)),
        "model": phase_statistics(vk, rbm.mean_hiddens(vk)),
    }
    update = update_from_statistics(stats)
    g0, gk = grad_of_free_energy(rbm, v0), grad_of_free_energy(rbm, vk)
    for name in ("W", "b", "c"):
        torch.testing.assert_close(update[name], gk[name] - g0[name])
    parts = [
        {ph: phase_statistics(x[i:j], rbm.mean_hiddens(x[i:j])) for ph, x in
         (("data", v0), ("model", vk))}
        for i, j in ((0, 2), (2, 6))
    ]
    summed = update_from_statistics(add_statistics(parts))
    for name in update:
        torch.testing.assert_close(summed[name], update[name])


@pytest.mark.parametrize("k,persistent", [(1, False), (3, False), (2, True)])
def test_statistics_follow_the_gibbs_chain_written_out(k, persistent):
    """The CD-k / PCD-k statistics (states kept as indices, means gathered) equal the chain
    written out with one-hot states and products, drawing in the same order from one seed:
    h ~ Cat(P(h | v)), v ~ N(b + h W, I), ..."""
    cfg = RBMConfig(k=k, persistent=persistent, n_chains=7 if persistent else None)
    rbm = randomise(SoftmaxRBM(4, 5, config=cfg, device="cpu", dtype=DT))
    v0 = torch.randn(6, 4, generator=gen(2), dtype=DT)
    got = rbm.statistics(v0, generator=gen(9))
    g, p0 = gen(9), rbm.mean_hiddens(v0)
    h = categorical_sample(p0, g)
    if persistent:
        h = h[torch.arange(7) % 6]
    for step in range(k):
        mean = rbm._visible_mean(h)
        vk = mean + torch.randn(mean.shape, generator=g, dtype=DT)
        pk = rbm.mean_hiddens(vk)
        if persistent or step < k - 1:
            h = categorical_sample(pk, g)
    want = {"data": (v0, p0), "model": (vk, pk)}
    for phase, (v, p) in want.items():
        torch.testing.assert_close(got[phase]["sums"], p.T @ v)
        torch.testing.assert_close(got[phase]["counts"], p.sum(0))
        torch.testing.assert_close(got[phase]["total"], v.sum(0))
    if persistent:
        assert torch.equal(rbm.chain_h, h)


def test_categorical_sample_is_one_hot_with_the_right_frequencies():
    p = torch.tensor([[0.1, 0.6, 0.3]], dtype=DT).expand(20000, 3)
    h = categorical_sample(p, gen(3))
    assert bool((h.sum(1) == 1).all())
    torch.testing.assert_close(h.mean(0), p[0], atol=0.02, rtol=0)


def test_categorical_sample_never_draws_a_state_of_probability_zero():
    p = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0],
                      [1.0, 0.0, 0.0, 0.0, 0.0]], dtype=DT).repeat(5000, 1)
    h = categorical_sample(p, gen(4))
    assert bool((h.sum(1) == 1).all()) and bool((h[p == 0] == 0).all())
    torch.testing.assert_close(h[0::3].mean(0), p[0], atol=0.02, rtol=0)


@pytest.mark.parametrize("persistent,seed", [(False, 5), (False, 8), (True, 8)])
def test_cd_training_moves_states_to_the_clusters(persistent, seed):
    """Three well-separated clusters, states seeded from data (seed 8: two in one cluster);
    after CD training each cluster's mean is won by its own state and b + W_k sits near it."""
    g = gen(4)
    centres = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    x = centres.repeat(100, 1) + 0.3 * torch.randn(300, 3, generator=g)
    cfg = RBMConfig(k=1, persistent=persistent, n_chains=50 if persistent else None)
    from models.rbm.optim import UpdateConfig

    rbm = SoftmaxRBM(3, 3, config=cfg, update=UpdateConfig(learning_rate=0.05), device="cpu",
                     generator=gen(seed))
    rbm.init_from_data(x)
    for _ in range(200):
        rbm.apply_update(rbm.compute_update(x))
    winners = rbm.mean_hiddens(centres).argmax(1)
    assert sorted(winners.tolist()) == [0, 1, 2]
    means = rbm.params["b"] + rbm.params["W"][winners]
    assert float((means - centres).norm(dim=1).max()) < 1.0


def test_init_from_data_makes_the_nearest_mean_win():
    rbm = SoftmaxRBM(3, 4, device="cpu", dtype=DT, generator=gen(1))
    x = torch.randn(30, 3, generator=gen(2), dtype=DT)
    rbm.init_from_data(x)
    means = rbm.params["b"] + rbm.params["W"]  # (K, D)
    expect = torch.softmax(-0.5 * torch.cdist(x, means).square(), 1)
    torch.testing.assert_close(rbm.mean_hiddens(x), expect)


def test_no_sparsity_target():
    with pytest.raises(ValueError, match="sparsity"):
        SoftmaxRBM(3, 3, config=RBMConfig(sparsity_target=0.1))
