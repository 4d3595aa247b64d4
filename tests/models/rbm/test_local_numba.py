"""The numba backend of LocalRBM (models/rbm/local_numba.py, models/kernels/local.py) against the
torch formulation."""

import numpy as np
import pytest
import torch

from models.kernels import local as kern
from models.rbm.dense import RBMConfig
from models.rbm.local import LocalRBM
from models.rbm.local_numba import NumbaLocal
from models.rbm.local_torch import TorchLocal
from tests.models.helpers import grad_of_free_energy

pytestmark = pytest.mark.skipif(not kern.HAVE_NUMBA, reason="numba not installed")

# (in_shape, field, stride, maps): the benchmark's geometry, gaps between fields and a
# non-square image, stride 1, one full-image field, stride larger than the field
GEOMETRIES = [
    ((1, 64, 64), 10, 2, 8),
    ((3, 13, 11), 4, 3, 3),
    ((2, 9, 9), 3, 1, 5),
    ((2, 5, 5), 5, 1, 4),
    ((1, 11, 10), 3, 4, 2),
]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def pair(geometry, dtype, visible="bernoulli", config=None, scale=1.0):
    """A fused model and a torch-path model with the same random parameters."""
    shape, r, s, K = geometry
    kw = dict(visible=visible, config=config, device="cpu", dtype=dtype)
    fused = LocalRBM(shape, r, s, K, generator=gen(), backend="numba", **kw)
    ref = LocalRBM(shape, r, s, K, generator=gen(), backend="torch", **kw)
    g = gen(1)
    for name, p in fused.params.items():
        p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * scale)
        ref.params[name].copy_(p)
    return fused, ref


def binary(shape, seed, dtype):
    return (torch.rand(shape, generator=gen(seed)) < 0.4).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_kernels_equal_torch_unfold_bmm_fold(geometry, dtype):
    fused, ref = pair(geometry, dtype, scale=0.3)
    P, K, D = ref.params["W"].shape
    W, c, b = (ref.params[n].numpy() for n in ("W", "c", "b"))
    Ph, Pw = ref.grid
    r, s = ref.field, ref.stride
    n0, nk = 5, 3  # column offsets: the kernels see the second phase at columns n0:
    img = torch.rand(*ref.in_shape, n0 + nk, generator=gen(2), dtype=dtype)  # (C, H, W, M)
    vk = img[..., n0:].permute(3, 0, 1, 2)  # (nk, C, H, W)
    x_ref, _ = ref.impl.up(ref.params, vk)  # (P, nk, K)
    out = torch.full((P, K, n0 + nk), np.nan, dtype=dtype)
    o = out.numpy()
    kern.up(img.numpy(), n0, n0 + nk, W, c, Pw, s, r, o, o.dtype.type(1), kern.RAW, 0, o)
    torch.testing.assert_close(out[:, :, n0:], x_ref.transpose(1, 2), **TOL[dtype])
    assert torch.isnan(out[:, :, :n0]).all(), "up wrote outside its columns"
    kern.up(img.numpy(), n0, n0 + nk, W, c, Pw, s, r, o, o.dtype.type(-0.5), kern.MEAN, 0, o)
    torch.testing.assert_close(
        out[:, :, n0:], -0.5 * torch.sigmoid(x_ref).transpose(1, 2), **TOL[dtype]
    )

    h = torch.rand(P, K, 2 + nk, generator=gen(3), dtype=dtype)  # columns 2: used
    y = torch.bmm(ref.params["W"].transpose(1, 2), h[:, :, 2:])  # (P, D, nk)
    lin = ref.geometry.fold(y.transpose(1, 2), bias=ref.params["b"])  # (nk, C, H, W)
    lin = lin.permute(1, 2, 3, 0)  # (C, H, W, nk)
    for mode, expect in ((kern.RAW, lin), (kern.MEAN, torch.sigmoid(lin))):
        rec = torch.full((*ref.in_shape, n0 + nk), np.nan, dtype=dtype)
        kern.down(h.numpy(), 2, nk, W, b, Ph, Pw, s, r, rec.numpy(), n0, mode, 0)
        torch.testing.assert_close(rec[..., n0:], expect, **TOL[dtype])
        assert torch.isnan(rec[..., :n0]).all(), "down wrote outside its columns"

    coef = torch.randn(P, K, n0 + nk, generator=gen(4), dtype=dtype)
    dW = torch.empty(P, K, D, dtype=dtype)
    dc = torch.empty(P, K, dtype=dtype)
    kern.gradient(img.numpy(), coef.numpy(), Pw, s, r, dW.numpy(), dc.numpy())
    v_all = img.permute(3, 0, 1, 2)  # (M, C, H, W)
    patches = ref.geometry.patches(v_all)  # (P, M, D)
    torch.testing.assert_close(dW, torch.bmm(coef, patches), **TOL[dtype])
    torch.testing.assert_close(dc, coef.sum(2), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_fused_conditionals_and_monitors_equal_torch(visible, dtype):
    fused, ref = pair(((2, 9, 8), 4, 2, 3), dtype, visible=visible, scale=0.3)
    v = torch.randn(6, 2, 9, 8, generator=gen(5), dtype=dtype)
    h = binary((6, 3, *ref.grid), 6, dtype)
    tol = TOL[dtype]
    torch.testing.assert_close(fused.mean_hiddens(v), ref.mean_hiddens(v), **tol)
    torch.testing.assert_close(fused.mean_visibles(h), ref.mean_visibles(h), **tol)
    torch.testing.assert_close(fused.free_energy(v), ref.free_energy(v), **tol)
    torch.testing.assert_close(
        fused.reconstruction_error(v), ref.reconstruction_error(v), **tol
    )


def negative_sample(rbm, n0):
    """v_k of the last fused compute_update: the workspace image's columns n0: (nk, C, H, W)."""
    return rbm.impl.buffers.img[..., n0:].permute(3, 0, 1, 2).clone()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "geometry,visible,config",
    [
        (GEOMETRIES[1], "bernoulli", RBMConfig(k=1)),
        (GEOMETRIES[2], "gaussian", RBMConfig(k=1)),
        (GEOMETRIES[4], "bernoulli", RBMConfig(k=3)),
        (GEOMETRIES[1], "bernoulli", RBMConfig(persistent=True, n_chains=4)),
        (GEOMETRIES[2], "gaussian", RBMConfig(persistent=True, k=2)),
    ],
)
def test_fused_update_equals_torch_gradient_for_its_samples(geometry, visible, config, dtype):
    fused, ref = pair(geometry, dtype, visible=visible, config=config, scale=0.3)
    shape = (7, *geometry[0])
    for step in range(2):  # the second step runs from the persistent chain
        v0 = binary(shape, 10 + step, dtype) if visible == "bernoulli" else (
            torch.randn(shape, generator=gen(10 + step), dtype=dtype))
        v_copy = v0.clone()
        update = fused.compute_update(v0, generator=gen(20 + step))
        assert torch.equal(v0, v_copy), "compute_update modified its input"
        vk = negative_sample(fused, shape[0])
        if visible == "bernoulli":
            assert set(vk.unique().tolist()) <= {0.0, 1.0}
        x0, a0 = ref.impl.up(ref.params, v0)
        xk, ak = ref.impl.up(ref.params, vk)
        expect = ref.impl.gradient(a0, torch.sigmoid(x0), ak, torch.sigmoid(xk))
        for name in ("W", "b", "c"):
            torch.testing.assert_close(update[name], expect[name], **TOL[dtype], msg=name)
        if dtype == torch.float64 and not config.persistent:
            # and it is the CD estimator: -dF(v0)/dtheta + dF(vk)/dtheta
            g0, gk = grad_of_free_energy(ref, v0), grad_of_free_energy(ref, vk)
            for name in update:
                torch.testing.assert_close(update[name], -g0[name] + gk[name], msg=name)
    if config.persistent:
        n = config.n_chains or shape[0]
        assert fused.chain_h.shape == (fused.n_positions, n, fused.n_maps)  # the torch layout


def test_fused_sparsity_term_equals_the_torch_paths_formula():
    geometry = GEOMETRIES[1]
    sparse = RBMConfig(sparsity_target=0.1, sparsity_cost=0.5, sparsity_decay=0.8)
    plain, _ = pair(geometry, torch.float64, scale=0.3)
    fused, ref = pair(geometry, torch.float64, config=sparse, scale=0.3)
    q = None
    for step in range(3):
        v0 = binary((5, *geometry[0]), step, torch.float64)
        u_plain = plain.compute_update(v0, generator=gen(step))
        u_sparse = fused.compute_update(v0, generator=gen(step))  # same seed, same samples
        mean_p = torch.sigmoid(ref.impl.up(ref.params, v0)[0]).mean(1)  # (P, K)
        q = mean_p if q is None else 0.8 * q + 0.2 * mean_p
        torch.testing.assert_close(u_sparse["c"] - u_plain["c"], 0.5 * (0.1 - q))
        torch.testing.assert_close(fused.q, q)
        torch.testing.assert_close(u_sparse["W"], u_plain["W"])


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_fused_updates_are_deterministic_for_a_seed_and_any_thread_count(visible):
    geometry = ((1, 16, 16), 4, 2, 4)
    saved = torch.get_num_threads()
    updates = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            fused, _ = pair(geometry, torch.float32, visible=visible, scale=0.1)
            v0 = binary((9, 1, 16, 16), 3, torch.float32)
            updates.append(fused.compute_update(v0, generator=gen(7)))
    finally:
        torch.set_num_threads(saved)
    for u in updates[1:]:
        for name in u:
            assert torch.equal(u[name], updates[0][name]), name
    fused, _ = pair(geometry, torch.float32, visible=visible, scale=0.1)
    other = fused.compute_update(v0, generator=gen(8))
    assert not torch.equal(other["W"], updates[0]["W"]), "the seed does not reach the samples"


def test_sampling_kernels_follow_their_distributions():
    dtype = torch.float64
    ref = LocalRBM((1, 6, 6), 3, 1, 2, device="cpu", dtype=dtype, generator=gen())
    P, K, D = ref.params["W"].shape
    W = (torch.randn(P, K, D, generator=gen(1), dtype=dtype) * 0.5).numpy()
    c = (torch.randn(P, K, generator=gen(2), dtype=dtype)).numpy()
    b = (torch.randn(1, 6, 6, generator=gen(3), dtype=dtype)).numpy()
    Ph, Pw = ref.grid
    n, reps = 50, 40
    img = binary((1, 6, 6, n), 4, dtype).numpy()
    out = np.empty((P, K, n))
    hs = np.empty((P, K, n))
    hidden_sum = np.zeros((P, K, n))
    vis = np.empty((1, 6, 6, n))
    vis_sum = np.zeros_like(vis)
    gauss_sum, gauss_sq = np.zeros_like(vis), np.zeros_like(vis)
    h_fixed = binary((P, K, n), 5, dtype).numpy()
    for key in range(1, reps + 1):
        kern.up(img, 0, n, W, c, Pw, 1, 3, out, 1.0, kern.SAMPLE, key * 7919, hs)
        hidden_sum += hs
        kern.down(h_fixed, 0, n, W, b, Ph, Pw, 1, 3, vis, 0, kern.SAMPLE, key * 104729)
        vis_sum += vis
        kern.down(h_fixed, 0, n, W, b, Ph, Pw, 1, 3, vis, 0, kern.GAUSS_SAMPLE, key * 15485863)
        gauss_sum += vis
        gauss_sq += vis**2
    kern.down(h_fixed, 0, n, W, b, Ph, Pw, 1, 3, vis, 0, kern.RAW, 0)
    lin = vis.copy()

    def z_score(total, p):  # pooled over all units: sum of Bernoulli(p) draws
        return (total.sum() - reps * p.sum()) / np.sqrt(reps * (p * (1 - p)).sum())

    assert abs(z_score(hidden_sum, out)) < 5  # out holds P(h|v) (scale 1)
    assert abs(z_score(vis_sum, 1 / (1 + np.exp(-lin)))) < 5
    # per-unit frequencies too (each within 6 binomial sds)
    sd = np.sqrt(reps * out * (1 - out)) + 1e-9
    assert (np.abs(hidden_sum - reps * out) < 6 * sd + 1e-6).all()
    mean = gauss_sum / reps
    var = gauss_sq / reps - mean**2
    m = mean.size
    assert abs((mean - lin).mean()) < 5 / np.sqrt(m * reps)
    assert abs(var.mean() - 1) < 0.05


def test_backend_argument():
    with pytest.raises(ValueError, match="backend"):
        LocalRBM((1, 8, 8), 3, 1, 2, device="cpu", backend="cython")
    auto = LocalRBM((1, 8, 8), 3, 1, 2, device="cpu")
    assert auto.backend == ("numba" if kern.HAVE_NUMBA else "torch")
    assert isinstance(auto.impl, NumbaLocal if kern.HAVE_NUMBA else TorchLocal)
    torch_path = LocalRBM((1, 8, 8), 3, 1, 2, device="cpu", backend="torch")
    assert torch_path.backend == "torch" and isinstance(torch_path.impl, TorchLocal)
    assert LocalRBM((1, 8, 8), 3, 1, 2, device="cpu", dtype=torch.bfloat16).backend == "torch"
    with pytest.raises(ValueError, match="float32/float64"):
        LocalRBM((1, 8, 8), 3, 1, 2, device="cpu", backend="numba", dtype=torch.bfloat16)


def test_float32_sigmoid_is_accurate():
    from numba import njit

    @njit(fastmath=True, error_model="numpy")
    def sigmoid_all(a):
        for i in range(a.shape[0]):
            a[i] = kern.sigmoid(a[i])

    x = np.linspace(-40, 40, 100001).astype(np.float32)
    y = x.copy()
    sigmoid_all(y)
    ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.abs(y - ref).max() < 3e-7
    assert (np.abs(y - ref) / ref).max() < 1e-5  # relative, down to sigmoid(-40) ~ 4e-18
