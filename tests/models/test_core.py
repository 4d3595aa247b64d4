"""Exact checks of the RBM core: energies, CD gradients, local layout, optimiser, stack."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from models import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    LocalRBM,
    ParameterUpdater,
    RBMConfig,
    RBMStack,
    StackConfig,
    StageConfig,
    UpdateConfig,
    l2_pool,
    local_contrast_normalize,
)
from models.rbm import bernoulli_sample

DT = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_binary(n: int, dtype=DT) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def randomise(rbm, seed=1, scale=0.5):
    g = gen(seed)
    for p in rbm.params.values():
        p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return rbm


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


def grad_of_free_energy(rbm, v):
    """d mean(F(v)) / d theta, computed by autograd on a copy of the parameters."""
    original = rbm.params
    leaves = {k: p.detach().clone().requires_grad_(True) for k, p in original.items()}
    rbm.params = leaves
    try:
        with torch.enable_grad():
            fn = type(rbm).free_energy.__wrapped__  # undecorated (no_grad) function
            fe = fn(rbm, v).mean()
            grads = torch.autograd.grad(fe, list(leaves.values()), allow_unused=True)
    finally:
        rbm.params = original
    pairs = zip(leaves, grads, strict=True)
    return {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in pairs}


def make_models():
    return [
        randomise(BernoulliRBM(6, 4, device="cpu", dtype=DT, generator=gen())),
        randomise(GaussianBernoulliRBM(5, 3, device="cpu", dtype=DT, generator=gen())),
        randomise(
            GaussianBernoulliRBM(5, 3, learn_sigma=True, device="cpu", dtype=DT, generator=gen()),
            scale=0.3,
        ),
        # backend="torch": replay_negative re-draws the torch path's samples (the fused numba
        # path draws its own stream; its equivalent is in test_local_cpu.py)
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
        config=RBMConfig(log_interval=5),
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


# --------------------------------------------------------------------------- local RBM
def masked_dense_weights(local: LocalRBM) -> torch.Tensor:
    """Dense (P*K, C*H*W) weights equal to the local ones inside each field, zero outside.

    Built by explicit loops over positions (independent of unfold/fold). Hidden order: p*K + k.
    """
    C, H, W = local.in_shape
    Ph, Pw = local.grid
    r, s, K = local.field, local.stride, local.n_maps
    dense = torch.zeros(Ph * Pw * K, C, H, W, dtype=local.dtype)
    for py in range(Ph):
        for px in range(Pw):
            p = py * Pw + px
            block = local.params["W"][p].reshape(K, C, r, r)
            dense[p * K : (p + 1) * K, :, py * s : py * s + r, px * s : px * s + r] = block
    return dense.reshape(Ph * Pw * K, C * H * W)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_local_conditionals_equal_masked_dense(visible):
    local = randomise(
        LocalRBM((2, 9, 8), 4, 2, 3, visible=visible, device="cpu", dtype=DT, generator=gen())
    )
    cls = BernoulliRBM if visible == "bernoulli" else GaussianBernoulliRBM
    dense = cls(2 * 9 * 8, local.n_hidden, device="cpu", dtype=DT, generator=gen())
    dense.params["W"].copy_(masked_dense_weights(local))
    dense.params["b"].copy_(local.params["b"].reshape(-1))
    dense.params["c"].copy_(local.params["c"].reshape(-1))
    v = torch.rand(5, 2, 9, 8, generator=gen(4), dtype=DT)
    N, (Ph, Pw), K = 5, local.grid, local.n_maps
    # hidden maps (N, K, Ph, Pw) -> dense order p*K + k
    h_local = local.mean_hiddens(v).permute(0, 2, 3, 1).reshape(N, Ph * Pw * K)
    torch.testing.assert_close(h_local, dense.mean_hiddens(v.reshape(N, -1)))
    h = (torch.rand(N, K, Ph, Pw, generator=gen(6)) < 0.5).to(DT)
    h_dense = h.permute(0, 2, 3, 1).reshape(N, -1)
    torch.testing.assert_close(local.mean_visibles(h).reshape(N, -1), dense.mean_visibles(h_dense))
    torch.testing.assert_close(local.free_energy(v), dense.free_energy(v.reshape(N, -1)))
    torch.testing.assert_close(
        local.reconstruction_error(v), dense.reconstruction_error(v.reshape(N, -1))
    )


def test_local_gradient_equals_masked_dense_gradient():
    local = randomise(LocalRBM((1, 7, 7), 3, 2, 2, device="cpu", dtype=DT, generator=gen()))
    dense = BernoulliRBM(49, local.n_hidden, device="cpu", dtype=DT, generator=gen())
    dense.params["W"].copy_(masked_dense_weights(local))
    dense.params["b"].copy_(local.params["b"].reshape(-1))
    dense.params["c"].copy_(local.params["c"].reshape(-1))
    v0 = (torch.rand(6, 1, 7, 7, generator=gen(1)) < 0.5).to(DT)
    vk = (torch.rand(4, 1, 7, 7, generator=gen(2)) < 0.5).to(DT)
    x0, a0 = local._up(v0)
    xk, ak = local._up(vk)
    ul = local._gradient(a0, torch.sigmoid(x0), ak, torch.sigmoid(xk))
    d0, dk = v0.reshape(6, -1), vk.reshape(4, -1)
    ud = dense._gradient(d0, dense.mean_hiddens(d0), dk, dense.mean_hiddens(dk))
    mask = masked_dense_weights(local) != 0
    dense_from_local = torch.zeros_like(dense.params["W"])
    saved = local.params["W"].clone()
    local.params["W"].copy_(ul["W"])
    dense_from_local = masked_dense_weights(local)
    local.params["W"].copy_(saved)
    torch.testing.assert_close(dense_from_local[mask], ud["W"][mask])
    torch.testing.assert_close(ul["b"].reshape(-1), ud["b"])
    torch.testing.assert_close(ul["c"].reshape(-1), ud["c"])


def test_local_with_one_full_field_equals_dense_rbm():
    # backend="torch": the CD samples must equal the dense RBM's from the same seed (same torch
    # sampling calls); test_local_cpu.py checks the fused path against the torch one
    local = randomise(
        LocalRBM((2, 5, 5), 5, 1, 4, device="cpu", dtype=DT, generator=gen(), backend="torch")
    )
    assert local.n_positions == 1
    dense = BernoulliRBM(50, 4, device="cpu", dtype=DT, generator=gen())
    dense.params["W"].copy_(local.params["W"][0])
    dense.params["b"].copy_(local.params["b"].reshape(-1))
    dense.params["c"].copy_(local.params["c"][0])
    v = (torch.rand(8, 2, 5, 5, generator=gen(3)) < 0.5).to(DT)
    torch.testing.assert_close(local.free_energy(v), dense.free_energy(v.reshape(8, -1)))
    torch.testing.assert_close(
        local.mean_hiddens(v).reshape(8, 4), dense.mean_hiddens(v.reshape(8, -1))
    )
    ul = local.compute_update(v, generator=gen(9))
    ud = dense.compute_update(v.reshape(8, -1), generator=gen(9))
    torch.testing.assert_close(ul["W"][0], ud["W"])
    torch.testing.assert_close(ul["b"].reshape(-1), ud["b"])
    torch.testing.assert_close(ul["c"][0], ud["c"])


def test_local_fields_that_leave_uncovered_pixels_still_get_bias_gradient():
    local = LocalRBM((1, 8, 8), 3, 3, 2, device="cpu", dtype=DT, generator=gen())  # 2x2 grid
    v = torch.ones(4, 1, 8, 8, dtype=DT)
    u = local.compute_update(v, generator=gen(1))
    assert u["b"][0, 7, 7] != 0  # pixel (7, 7) lies in no field, still has a bias gradient


def test_local_rejects_wrong_input_shape():
    local = LocalRBM((1, 8, 8), 3, 1, 2, device="cpu")
    with pytest.raises(ValueError, match="in_shape"):
        local.mean_hiddens(torch.zeros(2, 1, 9, 9))
    with pytest.raises(ValueError, match="field"):
        LocalRBM((1, 8, 8), 9, 1, 2, device="cpu")


# --------------------------------------------------------------------------- optimiser
def test_updater_momentum_schedule_and_weight_decay():
    cfg = UpdateConfig(
        learning_rate=0.1,
        initial_momentum=0.5,
        momentum=0.9,
        momentum_switch_step=2,
        weight_decay=0.01,
    )
    up = ParameterUpdater(cfg, decay_names=("W",))
    params = {"W": torch.ones(2, dtype=DT), "b": torch.ones(2, dtype=DT)}
    g = {"W": torch.full((2,), 2.0, dtype=DT), "b": torch.full((2,), 2.0, dtype=DT)}
    vel_w = vel_b = 0.0
    w = b = 1.0
    for step in range(4):
        m = 0.5 if step < 2 else 0.9
        vel_w = m * vel_w + 0.1 * (2.0 - 0.01 * w)
        vel_b = m * vel_b + 0.1 * 2.0
        w, b = w + vel_w, b + vel_b
        up.step(params, g)
    torch.testing.assert_close(params["W"], torch.full((2,), w, dtype=DT))
    torch.testing.assert_close(params["b"], torch.full((2,), b, dtype=DT))


@pytest.mark.parametrize("method", ["sgd", "adagrad"])
def test_updater_on_slices_equals_updater_on_whole(method):
    cfg = UpdateConfig(learning_rate=0.05, method=method, momentum_switch_step=1)
    whole = {"W": torch.randn(6, 3, generator=gen(1))}
    parts = [whole["W"][:2].clone(), whole["W"][2:].clone()]
    up_whole = ParameterUpdater(cfg)
    up_parts = [ParameterUpdater(cfg), ParameterUpdater(cfg)]
    for i in range(5):
        g = torch.randn(6, 3, generator=gen(10 + i))
        up_whole.step(whole, {"W": g})
        up_parts[0].step({"W": parts[0]}, {"W": g[:2]})
        up_parts[1].step({"W": parts[1]}, {"W": g[2:]})
    torch.testing.assert_close(torch.cat(parts), whole["W"])
    assert up_parts[0].state_dict()["step_count"] == 5


def test_updater_state_dict_round_trip_and_errors():
    cfg = UpdateConfig(learning_rate=0.1)
    a, b = ParameterUpdater(cfg), ParameterUpdater(cfg)
    pa = {"W": torch.zeros(3)}
    a.step(pa, {"W": torch.ones(3)})
    b.load_state_dict(a.state_dict())
    pb = {"W": pa["W"].clone()}
    a.step(pa, {"W": torch.ones(3)})
    b.step(pb, {"W": torch.ones(3)})
    torch.testing.assert_close(pa["W"], pb["W"])
    with pytest.raises(KeyError):
        a.step(pa, {"Q": torch.ones(3)})
    with pytest.raises(ValueError, match="shape"):
        a.step(pa, {"W": torch.ones(4)})
    with pytest.raises(ValueError, match="learning_rate"):
        UpdateConfig(learning_rate=-1)


# --------------------------------------------------------------------------- layers
def test_l2_pool_matches_brute_force():
    x = torch.randn(2, 3, 7, 6, generator=gen(1), dtype=DT)
    out = l2_pool(x, 3, 2)
    assert out.shape == (2, 3, 3, 2)
    for i in range(3):
        for j in range(2):
            window = x[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            torch.testing.assert_close(out[:, :, i, j], window.square().sum((2, 3)).sqrt())


def test_local_contrast_normalize_properties():
    g = gen(2)
    x = torch.rand(3, 2, 20, 20, generator=g, dtype=DT) * 5 + 10
    x_copy = x.clone()
    y = local_contrast_normalize(x, sigma=2.0)
    assert torch.equal(x, x_copy)
    assert y.shape == x.shape and y.dtype == x.dtype
    # invariant to brightness offset and contrast gain
    torch.testing.assert_close(local_contrast_normalize(3 * x + 7, sigma=2.0), y)
    # locally zero-mean: a blurred (over all channels) output is near zero
    assert y.mean().abs() < 0.05
    flat = torch.full((1, 1, 10, 10), 0.3)
    assert torch.isfinite(local_contrast_normalize(flat)).all()
    assert local_contrast_normalize(flat).abs().max() < 1e-4
    with pytest.raises(TypeError, match="float"):
        local_contrast_normalize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------------------- stack
def small_stack_config() -> StackConfig:
    return StackConfig(
        input_size=24,
        channels=1,
        stages=(
            StageConfig(field=6, stride=2, n_maps=4, pool=3),
            StageConfig(field=3, n_maps=3, pool=2),
        ),
    )


def test_stack_geometry_validation_names_the_field():
    with pytest.raises(ValueError, match=r"stages\[0\]\.field=80 > input 64"):
        StackConfig(input_size=64, stages=(StageConfig(field=80),))
    with pytest.raises(ValueError, match=r"stages\[1\]\.pool"):
        StackConfig(
            input_size=24,
            stages=(StageConfig(field=6, stride=2, pool=3), StageConfig(field=3, pool=9)),
        )
    with pytest.raises(ValueError, match=r"stages\[0\]\.stride"):
        StackConfig(input_size=24, stages=(StageConfig(field=6, stride=0),))
    with pytest.raises(ValueError, match="stages is empty"):
        StackConfig(input_size=24)
    # the paper's geometry is expressible
    le = StackConfig(
        input_size=200, channels=3, stages=(StageConfig(field=18, n_maps=8, pool=5),) * 3
    )
    assert le.input_shapes()[0] == (3, 200, 200)
    assert StackConfig.from_dict(le.to_dict()) == le


def test_stack_transform_and_stage_input_shapes_and_save_load(tmp_path):
    cfg = small_stack_config()
    stack = RBMStack(cfg, device="cpu", generator=gen(0))
    frames = torch.randint(0, 256, (5, 1, 24, 24), dtype=torch.uint8, generator=gen(1))
    frames_copy = frames.clone()
    v0 = stack.stage_input(frames, 0)
    assert v0.shape == (5, 1, 24, 24) and v0.dtype == torch.float32
    v1 = stack.stage_input(frames, 1)
    assert v1.shape == (5, *cfg.input_shapes()[1])
    out = stack.transform(frames, 1)
    assert out.shape == (5, *cfg.output_shape(1))
    assert torch.equal(frames, frames_copy)
    for k in range(2):
        rbm = stack.rbms[k]
        rbm.apply_update(rbm.compute_update(stack.stage_input(frames, k)))
    path = tmp_path / "stack.pt"
    stack.save(path)
    again = RBMStack.load(path, device="cpu")
    torch.testing.assert_close(again.transform(frames, 1), stack.transform(frames, 1))
    with pytest.raises(ValueError, match="expects"):
        stack.preprocess(torch.zeros(2, 3, 24, 24, dtype=torch.uint8))
    other = RBMStack(
        StackConfig(input_size=24, stages=(StageConfig(field=5, pool=2),)), device="cpu"
    )
    with pytest.raises(ValueError, match="different StackConfig"):
        other.load_state_dict(stack.state_dict())


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
