"""Receptive-field boxes, checked by hand on the tiny geometry and against the linear stack."""

from __future__ import annotations

import torch

from models.neurons.projection import pixel_projections, pooled_fields
from models.neurons.receptive_field import unit_box
from models.neurons.units import layer_shape, unit_position
from tests.models.tiny_stack import TINY, tiny_stack


def test_boxes_by_hand():
    # stage-0 hidden (y, x): pixels 2y .. 2y + 5
    assert unit_box(TINY, 0, "hidden", 0, 1) == [0, 2, 6, 8]
    # stage-0 pooled y=0: hidden 0..1 -> pixels 0..7; y=4: hidden 4..5 -> pixels 8..15
    assert unit_box(TINY, 0, "pooled", 0, 4) == [0, 8, 8, 16]
    # stage-1 hidden y=0: pooled-0 0..1 -> hidden-0 0..2 -> pixels 0..9
    assert unit_box(TINY, 1, "hidden", 0, 0) == [0, 0, 10, 10]
    # stage-1 pooled y=2: hidden-1 2..3 -> pooled-0 2..4 -> hidden-0 2..5 -> pixels 4..15
    assert unit_box(TINY, 1, "pooled", 2, 1) == [4, 2, 16, 14]


def test_linear_projection_support_is_the_box():
    """The linearised unit's pixel weights are nonzero exactly inside its box."""
    stack = tiny_stack()
    for stage, layer in ((0, "hidden"), (0, "pooled"), (1, "hidden"), (1, "pooled")):
        shape = layer_shape(TINY, stage, layer)
        idx = torch.arange(shape[0] * shape[1] * shape[2])
        proj = pixel_projections(stack, stage, layer, idx)  # (U, 1, 16, 16)
        for i in idx.tolist():
            _, y, x = unit_position(shape, i)
            y0, x0, y1, x1 = unit_box(TINY, stage, layer, y, x)
            inside = torch.zeros(16, 16, dtype=torch.bool)
            inside[y0:y1, x0:x1] = True
            support = proj[i, 0] != 0
            assert torch.equal(support, inside), (stage, layer, i)


def test_stage0_projection_is_sum_of_pooled_fields():
    stack = tiny_stack()
    shape = layer_shape(TINY, 0, "pooled")
    index = 1 * 25 + 2 * 5 + 3  # map 1, y 2, x 3
    proj = pixel_projections(stack, 0, "pooled", torch.tensor([index]))[0, 0]
    fields = pooled_fields(stack, *unit_position(shape, index))  # (2, 2, 1, 6, 6)
    expected = torch.zeros(16, 16, dtype=fields.dtype)
    for i in range(2):
        for j in range(2):
            y, x = 2 * (2 + i), 2 * (3 + j)
            expected[y : y + 6, x : x + 6] += fields[i, j, 0]
    torch.testing.assert_close(proj, expected)
