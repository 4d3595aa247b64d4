"""Exact checks of the dense RBMs (and the CD estimator on every RBM): energies, CD gradients."""

from __future__ import annotations

import math

import pytest
import torch

from models import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    LocalRBM,
    RBMConfig,
    UpdateConfig,
)
from models.rbm.dense import bernoulli_sample
from tests.models.helpers import DT, all_binary, gen, grad_of_free_energy, randomise


# --------------------------------------------------------------------------- free energy
def test_bernoulli_free_energy_matches_brute_force_over_hidden():
    rbm = randomise(BernoulliRBM(6, 5, device="cpu", dtype=DT, generator=gen()))
    W, b, c = rbm.params["W"], rbm.params["b"], rbm.params["c"]
    v = (torch.rand(7, 6, generator=gen(2)) < 0.5).to(DT)
    H = all_binary(5)  # (32, 5)
    neg_energy = v @ b[:, None] + H @ c + (v @ W.t()) @ H.t()  # (7, 32)
    expected = -torch.logsumexp(neg_energy, dim=1)
    torch.testing.assert_close(rbm.free_energy(v), expected)


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_gaussian_free_energy_matches_brute_force_over_hidden(learn_sigma):
    rbm = randomise(
        GaussianBernoulliRBM(4, 5, learn_sigma=learn_sigma, device="cpu", dtype=DT, generator=gen())
    )
    W, b, c = rbm.params["W"], rbm.params["b"], rbm.params["c"]
    sigma = rbm.params["log_sigma"].exp() if learn_sigma else torch.ones(4, dtype=DT)
    v = torch.randn(6, 4, generator=gen(3), dtype=DT)
    H = all_binary(5)
    quad = ((v - b) ** 2 / (2 * sigma**2)).sum(1, keepdim=True)
    neg_energy = -quad + H @ c + ((v / sigma) @ W.t()) @ H.t()
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(neg_energy, dim=1))


def test_free_energy_is_finite_for_huge_inputs():
    rbm = randomise(BernoulliRBM(5, 4, device="cpu", generator=gen()), scale=50.0)
    v = torch.ones(3, 5) * 1e4
    assert torch.isfinite(rbm.free_energy(v)).all()
    g = randomise(GaussianBernoulliRBM(5, 4, device="cpu", generator=gen()), scale=50.0)
    assert torch.isfinite(g.free_energy(torch.full((3, 5), 1e4))).all()


# --------------------------------------------------------------------------- CD gradient
def replay_negative(rbm, v0, seed):
    """Re-run compute_update's sampling (CD-1) with the same seed to get v_k."""
    g = torch.Generator().manual_seed(seed)
    x0, _ = rbm._up(v0)
    h = bernoulli_sample(torch.sigmoid(x0), g)
    return rbm._sample_visible(rbm._visible_mean(h), g)


def make_models():
    return [
        randomise(BernoulliRBM(6, 4, device="cpu", dtype=DT, generator=gen())),
        randomise(GaussianBernoulliRBM(5, 3, device="cpu", dtype=DT, generator=gen())),
        randomise(
            GaussianBernoulliRBM(5, 3, learn_sigma=True, device="cpu", dtype=DT, generator=gen()),
            scale=0.3,
        ),
        # backend="torch": replay_negative re-draws the torch path's samples (the fused numba
        # path draws its own stream; its equivalent is in test_local_numba.py)
        randomise(
            LocalRBM((2, 7, 7), 3, 2, 2, device="cpu", dtype=DT, generator=gen(), backend="torch")
        ),
        randomise(
            LocalRBM(
                (1, 6, 6), 4, 1, 3, visible="gaussian", device="cpu", dtype=DT, generator=gen(),
                backend="torch",
            )
        ),
    ]


@pytest.mark.parametrize("idx", range(5))
def test_cd_update_equals_autograd_of_free_energy(idx):
    rbm = make_models()[idx]
    shape = (9, *rbm.in_shape) if isinstance(rbm, LocalRBM) else (9, rbm.n_visible)
    if rbm.visible == "bernoulli":
        v0 = (torch.rand(shape, generator=gen(5)) < 0.5).to(DT)
    else:
        v0 = torch.randn(shape, generator=gen(5), dtype=DT)
    v_copy = v0.clone()
    before = {k: p.clone() for k, p in rbm.params.items()}
    update = rbm.compute_update(v0, generator=torch.Generator().manual_seed(11))
    assert torch.equal(v0, v_copy), "compute_update modified its input"
    for k, p in rbm.params.items():
        assert torch.equal(p, before[k]), "compute_update changed params"
    vk = replay_negative(rbm, v0, 11)
    g0, gk = grad_of_free_energy(rbm, v0), grad_of_free_energy(rbm, vk)
    assert set(update) == set(rbm.params)
    for k in update:
        # positive phase: -dF(v0)/dtheta; negative phase: +dF(vk)/dtheta
        torch.testing.assert_close(update[k], -g0[k] + gk[k], msg=f"param {k}")


def test_positive_phase_alone_matches_autograd():
    rbm = randomise(BernoulliRBM(6, 4, device="cpu", dtype=DT, generator=gen()))
    v0 = (torch.rand(5, 6, generator=gen(1)) < 0.5).to(DT)
    x0, a0 = rbm._up(v0)
    p0 = torch.sigmoid(x0)
    zeros_v = torch.zeros(1, 6, dtype=DT)
    pk = torch.sigmoid(rbm._hidden_input(zeros_v))
    # negative statistics at v = 0 contribute only to the hidden bias
    upd = rbm._gradient(a0, p0, zeros_v, pk)
    g0 = grad_of_free_energy(rbm, v0)
    torch.testing.assert_close(upd["W"], -g0["W"])
    torch.testing.assert_close(upd["b"], -g0["b"])
    torch.testing.assert_close(upd["c"], -g0["c"] - pk[0])


def test_gaussian_divergence_raises_clear_error():
    rbm = GaussianBernoulliRBM(
        10,
        5,
        device="cpu",
        generator=gen(),
        config=RBMConfig(check_interval=5),
        update=UpdateConfig(learning_rate=50.0, momentum=0.9, initial_momentum=0.9),
    )
    v = torch.randn(20, 10, generator=gen(1)) * 30
    with pytest.raises(FloatingPointError, match="learning_rate"):
        for _ in range(200):
            rbm.apply_update(rbm.compute_update(v))


def test_persistent_chain_uses_its_own_size():
    rbm = BernoulliRBM(
        6, 4, device="cpu", generator=gen(), config=RBMConfig(persistent=True, n_chains=3)
    )
    v = (torch.rand(10, 6, generator=gen(1)) < 0.5).float()
    rbm.compute_update(v)
    assert rbm.chain_h.shape == (3, 4)
    rbm.compute_update(v[:7])
    assert rbm.chain_h.shape == (3, 4)


def test_sparsity_pushes_hidden_bias_towards_target():
    cfg = RBMConfig(sparsity_target=0.05, sparsity_cost=1.0)
    rbm = BernoulliRBM(6, 4, device="cpu", generator=gen(), config=cfg)
    plain = BernoulliRBM(6, 4, device="cpu", generator=gen())
    v = (torch.rand(10, 6, generator=gen(1)) < 0.5).float()
    u_sparse = rbm.compute_update(v, generator=gen(3))
    u_plain = plain.compute_update(v, generator=gen(3))
    # mean activity ~0.5 > 0.05 target: the sparsity term lowers hidden biases
    assert (u_sparse["c"] < u_plain["c"]).all()
    torch.testing.assert_close(u_sparse["W"], u_plain["W"])




def test_float32_and_float64_agree():
    r64 = randomise(BernoulliRBM(8, 5, device="cpu", dtype=DT, generator=gen()))
    r32 = BernoulliRBM(8, 5, device="cpu", dtype=torch.float32, generator=gen())
    for k, p in r64.params.items():
        r32.params[k].copy_(p)
    v = (torch.rand(4, 8, generator=gen(1)) < 0.5).to(DT)
    f32 = r32.free_energy(v)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), r64.free_energy(v), rtol=1e-5, atol=1e-5)
    assert math.isfinite(float(r32.reconstruction_error(v)))
    assert all(u.dtype == torch.float32 for u in r32.compute_update(v).values())
    # same negative sample in both precisions (the random streams differ by dtype)
    vk = (torch.rand(6, 8, generator=gen(2)) < 0.5).to(DT)
    u64 = r64._gradient(v, r64.mean_hiddens(v), vk, r64.mean_hiddens(vk))
    v32, vk32 = v.float(), vk.float()
    u32 = r32._gradient(v32, r32.mean_hiddens(v32), vk32, r32.mean_hiddens(vk32))
    for k in u32:
        assert u32[k].dtype == torch.float32
        torch.testing.assert_close(u32[k].double(), u64[k], rtol=1e-4, atol=1e-5)


def test_count_updates_advances_both_counters_and_checks_divergence_at_the_interval():
    """A fused step that changed ``params`` in place is counted like ``apply_update``."""
    rbm = BernoulliRBM(4, 3, config=RBMConfig(check_interval=5), device="cpu", dtype=DT,
                       generator=gen())
    rbm.count_updates(3)
    assert rbm.n_updates == rbm.updater.step_count == 3
    rbm.params["W"][0, 0] = float("nan")
    rbm.count_updates(1)  # 4 updates: no interval boundary crossed, no check
    with pytest.raises(FloatingPointError, match="diverged"):
        rbm.count_updates(2)  # 6: the check at 5 runs


def test_auto_and_none_both_choose_the_default_device():
    from models.rbm.dense import default_device, resolve_device

    assert resolve_device("auto") == resolve_device(None) == default_device()
    assert resolve_device("cpu") == torch.device("cpu")
    assert BernoulliRBM(3, 2, device="auto").device == default_device()
