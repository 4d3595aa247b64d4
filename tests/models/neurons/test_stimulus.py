"""Optimal stimulus search: the closed-form optimum of a linear-sigmoid unit, and ascent on a
tiny stack."""

from __future__ import annotations

import torch

from models.neurons.stimulus import StimulusConfig, normalise, optimal_stimuli, unit_objective
from models.neurons.units import up_pass
from tests.models.tiny_stack import tiny_stack


def test_linear_sigmoid_unit_finds_normalised_weights():
    """max sigmoid(w.x + c) over ||x|| = 1 is at x = w / ||w|| (Cauchy-Schwarz)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)  # 3 units on (2, 5, 5) inputs
    c = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def objective(x):  # (U, S, 2, 5, 5) -> (U, S)
        return torch.sigmoid((x * W[:, None]).sum((2, 3, 4)) + c[:, None])

    x, a = optimal_stimuli(objective, 3, (2, 5, 5), StimulusConfig(n_starts=3, n_steps=100),
                           generator=g, dtype=torch.float64)
    target = normalise(W, 3)
    cos = (x * target).sum((1, 2, 3))
    assert torch.all(cos > 0.999), cos
    best = torch.sigmoid(W.flatten(1).norm(dim=1) + c)
    torch.testing.assert_close(a, best, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.flatten(1).norm(dim=1), torch.ones(3, dtype=torch.float64))


def test_ascent_raises_activation_on_tiny_stack():
    stack = tiny_stack()
    g = torch.Generator().manual_seed(1)
    for stage, layer, indices in ((0, "pooled", [0, 37]), (1, "pooled", [4, 13]),
                                  (1, "hidden", [5])):
        idx = torch.tensor(indices)
        f = unit_objective(stack, stage, layer, idx)
        none = StimulusConfig(n_starts=4, n_steps=0)
        _, start = optimal_stimuli(f, len(idx), (1, 16, 16), none,
                                   generator=torch.Generator().manual_seed(2),
                                   dtype=torch.float64)
        x, a = optimal_stimuli(f, len(idx), (1, 16, 16), StimulusConfig(n_starts=4, n_steps=40),
                               generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        assert torch.all(a > start + 1e-3), (stage, layer, a, start)
        # the reported activation is the unit's activation on the returned stimulus
        out = up_pass(stack, x, stage, layer).flatten(1)
        torch.testing.assert_close(out[torch.arange(len(idx)), idx], a)
        # and beats the best of many random unit-norm inputs
        r = normalise(torch.randn(256, 1, 16, 16, generator=g, dtype=torch.float64), 3)
        assert torch.all(a > up_pass(stack, r, stage, layer).flatten(1)[:, idx].max(0).values)


def test_a_competitive_unit_objective_equals_the_whole_up_pass_and_its_gradient():
    """The objective of a competitive stage's units (each image through its best window
    alone) against the whole differentiable up-pass: the same activations and gradients."""
    from models.stack import RBMStack, StackConfig
    from models.stages.config import StageConfig

    config = StackConfig(input_size=24, channels=1, input_lcn_sigma=0.0, stages=(
        StageConfig(kind="tied", learner="kmeans", field=5, n_maps=4, pool=2, pool_stride=2),
        StageConfig(kind="competitive", learner="rbm", field=3, n_maps=6, dims=8,
                    sizes=(24, 18), rows_per_frame=4)))
    stack = RBMStack(config, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(16, 1, 24, 24, generator=g, dtype=torch.float64)
    for k in range(2):
        stack.prepare(k, frames, generator=g)
    units = torch.tensor([5, 0, 3])
    x = torch.rand(3, 2, 1, 24, 24, generator=g, dtype=torch.float64).requires_grad_(True)
    got = unit_objective(stack, 1, "pooled", units)(x)
    (grad,) = torch.autograd.grad(got.sum(), x)
    whole = up_pass(stack, x.flatten(0, 1), 1, "pooled").flatten(1)
    want = whole[torch.arange(6), units.repeat_interleave(2)].view(3, 2)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, want_grad)
