"""LocalRBM against a dense RBM with masked weights: conditionals, gradients, layout."""

from __future__ import annotations

import pytest
import torch

from models import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    LocalRBM,
)
from tests.models.helpers import DT, gen, randomise


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
    torch_path = local.reference  # the torch formulation, whatever the backend
    x0, a0 = torch_path.up(local.params, v0)
    xk, ak = torch_path.up(local.params, vk)
    ul = torch_path.gradient(a0, torch.sigmoid(x0), ak, torch.sigmoid(xk))
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
    # sampling calls); test_local_numba.py checks the fused path against the torch one
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
