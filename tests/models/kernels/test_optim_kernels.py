"""The one-pass optimiser kernels (models/kernels/optim.py) against the torch optimiser
arithmetic (to rounding)."""

import pytest
import torch

from models.kernels import optim as optim_kernels
from models.rbm.optim import ParameterUpdater, UpdateConfig

pytestmark = pytest.mark.skipif(not optim_kernels.HAVE_NUMBA, reason="numba not installed")


@pytest.mark.parametrize("method", ["sgd", "adagrad"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fused_updater_equals_torch_updater(monkeypatch, method, dtype, tol):
    cfg = UpdateConfig(learning_rate=0.01, weight_decay=0.001, method=method,
                       momentum_switch_step=2)
    g = torch.Generator().manual_seed(0)
    fused = {"W": torch.randn(300, 200, generator=g, dtype=dtype),
             "c": torch.randn(7, dtype=dtype, generator=g)}
    plain = {k: v.clone() for k, v in fused.items()}
    assert optim_kernels.usable(fused["W"], fused["W"], fused["W"])
    u_fused, u_plain = ParameterUpdater(cfg), ParameterUpdater(cfg)
    for _ in range(5):
        update = {k: torch.randn(v.shape, generator=g, dtype=dtype) for k, v in fused.items()}
        u_fused.step(fused, update)
        with monkeypatch.context() as m:
            m.setattr(optim_kernels, "HAVE_NUMBA", False)
            assert not optim_kernels.usable(fused["W"])
            u_plain.step(plain, update)
    for k in fused:
        torch.testing.assert_close(fused[k], plain[k], rtol=tol, atol=tol)
    state = u_fused.velocity if method == "sgd" else u_fused.accum
    other = u_plain.velocity if method == "sgd" else u_plain.accum
    torch.testing.assert_close(state["W"], other["W"], rtol=tol, atol=tol)
