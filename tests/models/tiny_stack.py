"""A tiny two-stage stack with random (not zero-bias) weights, for the visualisation math tests."""

from __future__ import annotations

import torch

from models.stack import RBMStack, StackConfig, StageConfig

# stage 0: 16x16 pixels, 6x6 fields, stride 2 -> 6x6 x 3 maps, pool 2 -> 5x5
# stage 1: 2x2 fields over 5x5x3 -> 4x4 x 2 maps, pool 2 -> 3x3
TINY = StackConfig(input_size=16, channels=1, stages=(
    StageConfig(field=6, stride=2, n_maps=3, pool=2),
    StageConfig(field=2, stride=1, n_maps=2, pool=2, visible="bernoulli"),
))


def tiny_stack(seed: int = 0) -> RBMStack:
    """TINY with weights of std 0.5 and random hidden biases, on CPU, float64."""
    g = torch.Generator().manual_seed(seed)
    stack = RBMStack(TINY, generator=g, device="cpu", dtype=torch.float64)
    for rbm in stack.rbms:
        rbm.params["W"].normal_(0.0, 0.5, generator=g)
        rbm.params["c"].normal_(0.0, 0.5, generator=g)
    return stack
