"""LocalRBM's geometry and backends on their own: each backend needs the geometry and the
parameters, not the model, and gives what the model gives."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.kernels import local as kern
from models.rbm.dense import RBMConfig
from models.rbm.local import LocalRBM, make_backend
from models.rbm.local_geometry import LocalGeometry
from tests.models.helpers import DT, gen, randomise

BACKENDS = ["torch", "numba"] if kern.HAVE_NUMBA else ["torch"]


def test_geometry_validates_once_and_is_frozen():
    geo = LocalGeometry((2, 9, 8), 4, 2, 3)
    assert (geo.grid, geo.n_positions, geo.patch_size) == ((3, 3), 9, 32)
    assert (geo.n_hidden, geo.n_visible) == (27, 144)
    with pytest.raises(dataclasses.FrozenInstanceError):
        geo.field = 5
    for args, match in [
        (((0, 8, 8), 3, 1, 2), "in_shape"),
        (((1, 8, 8), 9, 1, 2), "field"),
        (((1, 8, 8), 3, 0, 2), "stride"),
        (((1, 8, 8), 3, 1, 0), "n_maps"),
    ]:
        with pytest.raises(ValueError, match=match):
            LocalGeometry(*args)
    with pytest.raises(ValueError, match="not \\(N, \\*in_shape\\)"):
        geo.check_maps(torch.zeros(2, 2, 8, 9))


def test_model_attributes_come_from_its_geometry():
    local = LocalRBM((2, 9, 8), 4, 2, 3, device="cpu")
    geo = local.geometry
    assert (local.in_shape, local.field, local.stride, local.n_maps) == (
        geo.in_shape, geo.field, geo.stride, geo.n_maps)
    assert (local.grid, local.n_positions, local.patch_size) == ((3, 3), 9, 32)
    assert local.params["W"].shape == (9, 3, 32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_a_backend_from_geometry_and_parameters_runs_the_models_pcd(backend, visible):
    """The backend alone, given the chains back each step, makes the model's updates, chains
    and conditionals: the model only keeps state (chains, sparsity estimate, parameters)."""
    cfg = RBMConfig(k=2, persistent=True, n_chains=5)
    local = randomise(
        LocalRBM((2, 9, 8), 4, 2, 3, visible=visible, config=cfg, device="cpu", dtype=DT,
                 generator=gen(), backend=backend),
        scale=0.3,
    )
    params = {k: p.clone() for k, p in local.params.items()}
    alone = make_backend(backend, local.geometry, visible, torch.device("cpu"), DT)
    assert type(alone) is type(local.impl)
    chain = None
    for step in range(3):  # the first step starts the chains, the others continue them
        v = (torch.rand(7, 2, 9, 8, generator=gen(step)) < 0.4).to(DT)
        expect = local.compute_update(v, generator=gen(10 + step))
        got = alone.compute_update(params, v, chain=chain, n_negative=5,
                                   cd=cfg, generator=gen(10 + step))
        chain = got.chain
        for name in expect:
            assert torch.equal(got.update[name], expect[name]), name
        assert torch.equal(chain, local.chain_h)
        assert chain.shape == (9, 5, 3)  # (P, n_chains, K)
    h = local.mean_hiddens(v)
    assert torch.equal(alone.mean_hiddens(params, v), h)
    assert torch.equal(alone.mean_visibles(params, h), local.mean_visibles(h))
    assert torch.equal(alone.reconstruction_error(params, v), local.reconstruction_error(v))
