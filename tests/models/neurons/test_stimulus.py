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
