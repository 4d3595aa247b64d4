"""The same code on CUDA (skipped without a GPU): results match the CPU on equal inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import (
    BernoulliRBM,
    BernoulliRBMEstimator,
    GaussianBernoulliRBM,
    LocalRBM,
    RBMStack,
    StackConfig,
    StageConfig,
    log_partition_ais,
    log_partition_exact,
    pseudo_log_likelihood,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
DT = torch.float64


def twin(cls, *args, **kw):
    """The same randomised model on CPU and CUDA."""
    cpu = cls(*args, device="cpu", dtype=DT, generator=torch.Generator().manual_seed(0), **kw)
    g = torch.Generator().manual_seed(1)
    for p in cpu.params.values():
        p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.3)
    gpu = cls(*args, device=CUDA, dtype=DT, generator=torch.Generator().manual_seed(0), **kw)
    for k, p in cpu.params.items():
        gpu.params[k].copy_(p)
    return cpu, gpu


@pytest.mark.parametrize(
    "cls,args,kw,shape",
    [
        (BernoulliRBM, (12, 7), {}, (9, 12)),
        (GaussianBernoulliRBM, (12, 7), {"learn_sigma": True}, (9, 12)),
        (LocalRBM, ((2, 11, 11), 5, 2, 3), {}, (9, 2, 11, 11)),
    ],
)
def test_cpu_and_cuda_agree(cls, args, kw, shape):
    cpu, gpu = twin(cls, *args, **kw)
    v = (torch.rand(shape, generator=torch.Generator().manual_seed(2)) < 0.5).to(DT)
    vk = (torch.rand(shape, generator=torch.Generator().manual_seed(3)) < 0.5).to(DT)
    torch.testing.assert_close(gpu.free_energy(v).cpu(), cpu.free_energy(v))
    torch.testing.assert_close(gpu.mean_hiddens(v).cpu(), cpu.mean_hiddens(v))
    x0c, a0c = cpu._up(v)
    xkc, akc = cpu._up(vk)
    x0g, a0g = gpu._up(v.to(CUDA))
    xkg, akg = gpu._up(vk.to(CUDA))
    uc = cpu._gradient(a0c, torch.sigmoid(x0c), akc, torch.sigmoid(xkc))
    ug = gpu._gradient(a0g, torch.sigmoid(x0g), akg, torch.sigmoid(xkg))
    for k in uc:
        torch.testing.assert_close(ug[k].cpu(), uc[k])
    # a full training step runs on the GPU with a GPU generator, params stay there
    gen = torch.Generator(device=CUDA).manual_seed(4)
    gpu.apply_update(gpu.compute_update(v.to(CUDA), generator=gen))
    assert all(p.device.type == "cuda" for p in gpu.params.values())
    gpu.check_finite()


def test_likelihood_and_estimator_on_cuda():
    cpu, gpu = twin(BernoulliRBM, 20, 12)
    assert log_partition_exact(gpu) == pytest.approx(log_partition_exact(cpu), abs=1e-8)
    est, se = log_partition_ais(
        gpu, n_runs=200, betas=3000, generator=torch.Generator(device=CUDA).manual_seed(0)
    )
    assert abs(est - log_partition_exact(cpu)) < max(0.5, 3 * se)
    v = (torch.rand(5, 20, generator=torch.Generator().manual_seed(1)) < 0.5).to(DT)
    torch.testing.assert_close(
        pseudo_log_likelihood(gpu, v.to(CUDA)).cpu(), pseudo_log_likelihood(cpu, v)
    )
    X = (np.random.RandomState(0).rand(60, 16) > 0.5).astype(np.float32)
    model = BernoulliRBMEstimator(8, n_iter=3, random_state=0, device="cuda").fit(X)
    assert model.transform(X).shape == (60, 8)
    assert isinstance(model.components_, np.ndarray)


def test_stack_on_cuda():
    cfg = StackConfig(
        input_size=24,
        stages=(
            StageConfig(field=6, stride=2, n_maps=4, pool=3),
            StageConfig(field=3, n_maps=3, pool=2),
        ),
    )
    frames = torch.randint(
        0, 256, (4, 1, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    cpu = RBMStack(cfg, device="cpu", dtype=DT, generator=torch.Generator().manual_seed(0))
    gpu = RBMStack(cfg, device=CUDA, dtype=DT, generator=torch.Generator().manual_seed(0))
    gpu.load_state_dict(
        {
            "config": cfg.to_dict(),
            "rbms": [
                {**s, "params": {k: p.to(CUDA) for k, p in s["params"].items()}}
                for s in cpu.state_dict()["rbms"]
            ],
        }
    )
    torch.testing.assert_close(gpu.transform(frames, 1).cpu(), cpu.transform(frames, 1))
    rbm = gpu.rbms[1]
    rbm.apply_update(rbm.compute_update(gpu.stage_input(frames, 1)))
