"""ConvRBM against a LocalRBM with the filters repeated at every position, and against autograd."""

from __future__ import annotations

import pytest
import torch

from models.rbm.conv import ConvRBM
from models.rbm.local import LocalRBM
from tests.models.helpers import DT, gen, grad_of_free_energy, randomise


def tied_local(conv: ConvRBM, size: tuple[int, int]) -> LocalRBM:
    """A LocalRBM whose untied weights are the conv filters at every position (brute force)."""
    C, K = conv.in_channels, conv.n_maps
    local = LocalRBM(
        (C, *size), conv.field, conv.stride, K, visible=conv.visible, device="cpu", dtype=DT,
        backend="torch",
    )
    P = local.n_positions
    local.params["W"].copy_(conv.params["W"].reshape(1, K, -1).expand(P, K, -1))
    local.params["c"].copy_(conv.params["c"].expand(P, K))
    local.params["b"].copy_(conv.params["b"].view(C, 1, 1).expand(C, *size))
    return local


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("stride,size", [(1, (8, 7)), (2, (9, 8)), (3, (10, 11))])
def test_conditionals_equal_tied_local_rbm(visible, stride, size):
    conv = randomise(ConvRBM(2, 3, 4, stride=stride, visible=visible, device="cpu", dtype=DT))
    local = tied_local(conv, size)
    v = torch.rand(5, 2, *size, generator=gen(3), dtype=DT)
    torch.testing.assert_close(conv.mean_hiddens(v), local.mean_hiddens(v))
    h = (torch.rand(conv.mean_hiddens(v).shape, generator=gen(4), dtype=DT) < 0.5).to(DT)
    torch.testing.assert_close(conv.mean_visibles(h, size), local.mean_visibles(h))
    torch.testing.assert_close(conv.free_energy(v), local.free_energy(v))
    torch.testing.assert_close(conv.reconstruction_error(v), local.reconstruction_error(v))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("stride", [1, 2])
def test_gradient_equals_autograd_of_free_energy(visible, stride):
    """CD's statistics with P(h|v) are -dF/dtheta(data) + dF/dtheta(sample), summed over
    positions; the data and sample batches differ in rows and the sample in map size."""
    conv = randomise(ConvRBM(2, 3, 4, stride=stride, visible=visible, device="cpu", dtype=DT))
    v0 = torch.randn(6, 2, 9, 8, generator=gen(1), dtype=DT)
    vk = torch.randn(4, 2, 10, 9, generator=gen(2), dtype=DT)
    x0, a0 = conv._up(v0)
    xk, ak = conv._up(vk)
    update = conv._gradient(a0, torch.sigmoid(x0), ak, torch.sigmoid(xk))
    g0, gk = grad_of_free_energy(conv, v0), grad_of_free_energy(conv, vk)
    for name in ("W", "b", "c"):
        torch.testing.assert_close(update[name], gk[name] - g0[name])


def test_training_lowers_reconstruction_error_and_applies_shard_slices():
    """A few CD-1 steps on shifted copies of one pattern; a shard holding filters 0:2 applies
    exactly the single-process step to its slice."""
    g = gen(5)
    base = torch.randn(1, 1, 12, 12, generator=g)
    data = torch.cat([torch.roll(base, (i, j), (2, 3)) for i in range(4) for j in range(4)])
    conv = ConvRBM(1, 5, 4, device="cpu", generator=gen(6))
    before = float(conv.reconstruction_error(data))
    for _ in range(150):
        conv.apply_update(conv.compute_update(data))
    assert float(conv.reconstruction_error(data)) < 0.8 * before
    update = conv.compute_update(data)
    shard = {name: p[:2].clone() for name, p in conv.params.items() if name != "b"}
    from models.rbm.optim import ParameterUpdater

    ParameterUpdater(conv.update_config).step(shard, {n: update[n][:2] for n in shard})
    whole = {n: p.clone() for n, p in conv.params.items()}
    ParameterUpdater(conv.update_config).step(whole, update)
    torch.testing.assert_close(shard["W"], whole["W"][:2])


def test_persistent_chains_and_sparsity_keep_shapes():
    conv = ConvRBM(1, 3, 4, stride=2, config=None, device="cpu", generator=gen(1))
    from models.rbm.dense import RBMConfig

    conv.config = RBMConfig(persistent=True, n_chains=3, sparsity_target=0.1)
    v = torch.randn(5, 1, 9, 9, generator=gen(2))
    u = conv.compute_update(v)
    assert u["W"].shape == (4, 1, 3, 3) and u["c"].shape == (4,) and u["b"].shape == (1,)
    assert conv.chain_h.shape == (3, 4, 4, 4)
    with pytest.raises(ValueError, match="persistent chains hold"):
        conv.compute_update(torch.randn(5, 1, 11, 11, generator=gen(3)))


def test_bad_input_names_the_shape():
    conv = ConvRBM(2, 5, 3, device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\) maps with H, W >= 5"):
        conv.mean_hiddens(torch.zeros(1, 1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    conv = randomise(ConvRBM(2, 3, 4, stride=2, device="cpu", dtype=DT))
    gpu = ConvRBM(2, 3, 4, stride=2, device="cuda", dtype=DT)
    for n, p in conv.params.items():
        gpu.params[n].copy_(p)
    v0 = torch.randn(6, 2, 9, 8, generator=gen(1), dtype=DT)
    vk = torch.randn(4, 2, 9, 8, generator=gen(2), dtype=DT)
    cpu_u = conv._gradient(v0, conv.mean_hiddens(v0), vk, conv.mean_hiddens(vk))
    vg0, vgk = v0.cuda(), vk.cuda()
    gpu_u = gpu._gradient(vg0, gpu.mean_hiddens(vg0), vgk, gpu.mean_hiddens(vgk))
    for name in cpu_u:
        torch.testing.assert_close(gpu_u[name].cpu(), cpu_u[name])
