"""The differentiable up-pass equals the stack's own (fused) methods; unit naming."""

from __future__ import annotations

import pytest
import torch

from models.layers import l2_pool
from models.neurons.units import layer_shape, stage_outputs, unit_position, up_pass
from tests.models.tiny_stack import TINY, tiny_stack


def test_up_pass_equals_stack_transform():
    stack = tiny_stack()
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for stage in (0, 1):
        torch.testing.assert_close(up_pass(stack, x, stage, "pooled_lcn"),
                                   stack.transform(x, stage))
        h = stack.rbms[stage].mean_hiddens(stack.stage_input(x, stage))
        torch.testing.assert_close(up_pass(stack, x, stage, "hidden"), h)
        st = stack.config.stages[stage]  # "pooled": the L2 pooling of h, before normalisation
        torch.testing.assert_close(up_pass(stack, x, stage), l2_pool(h, st.pool, st.pool_stride))


def test_up_pass_has_gradients_and_stage_outputs_match():
    stack = tiny_stack()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    up_pass(stack, x, 1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    frames = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    outs = stage_outputs(stack, frames, 1, "pooled_lcn")
    torch.testing.assert_close(outs[1], stack.transform(frames, 1))
    pooled = stage_outputs(stack, frames, 1)
    torch.testing.assert_close(pooled[1], up_pass(stack, frames.double() / 255, 1))
    assert [tuple(o.shape[1:]) for o in outs] == [(3, 5, 5), (2, 3, 3)]


def test_layer_shape_and_unit_position():
    assert layer_shape(TINY, 0, "hidden") == (3, 6, 6)
    assert layer_shape(TINY, 1, "pooled") == (2, 3, 3)
    assert unit_position((2, 3, 3), 0) == (0, 0, 0)
    assert unit_position((2, 3, 3), 14) == (1, 1, 2)  # 14 = 1*9 + 1*3 + 2
    with pytest.raises(IndexError):
        unit_position((2, 3, 3), 18)
    with pytest.raises(ValueError):
        layer_shape(TINY, 0, "visible")
