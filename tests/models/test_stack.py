"""The stack: geometry checks, transforms, save and load."""

from __future__ import annotations

import pytest
import torch

from models import (
    RBMStack,
    StackConfig,
    StageConfig,
)
from tests.models.helpers import gen


# --------------------------------------------------------------------------- stack
def small_stack_config() -> StackConfig:
    return StackConfig(
        input_size=24,
        channels=1,
        stages=(
            StageConfig(field=6, stride=2, n_maps=4, pool=3),
            StageConfig(field=3, n_maps=3, pool=2),
        ),
    )


def test_stack_geometry_validation_names_the_field():
    with pytest.raises(ValueError, match=r"stages\[0\]\.field=80 > input 64"):
        StackConfig(input_size=64, stages=(StageConfig(field=80),))
    with pytest.raises(ValueError, match=r"stages\[1\]\.pool"):
        StackConfig(
            input_size=24,
            stages=(StageConfig(field=6, stride=2, pool=3), StageConfig(field=3, pool=9)),
        )
    with pytest.raises(ValueError, match=r"stages\[0\]\.stride"):
        StackConfig(input_size=24, stages=(StageConfig(field=6, stride=0),))
    with pytest.raises(ValueError, match="stages is empty"):
        StackConfig(input_size=24)
    # the paper's geometry is expressible
    le = StackConfig(
        input_size=200, channels=3, stages=(StageConfig(field=18, n_maps=8, pool=5),) * 3
    )
    assert le.input_shapes()[0] == (3, 200, 200)
    assert StackConfig.from_dict(le.to_dict()) == le


def test_stack_transform_and_stage_input_shapes_and_save_load(tmp_path):
    cfg = small_stack_config()
    stack = RBMStack(cfg, device="cpu", generator=gen(0))
    frames = torch.randint(0, 256, (5, 1, 24, 24), dtype=torch.uint8, generator=gen(1))
    frames_copy = frames.clone()
    v0 = stack.stage_input(frames, 0)
    assert v0.shape == (5, 1, 24, 24) and v0.dtype == torch.float32
    v1 = stack.stage_input(frames, 1)
    assert v1.shape == (5, *cfg.input_shapes()[1])
    out = stack.transform(frames, 1)
    assert out.shape == (5, *cfg.output_shape(1))
    assert torch.equal(frames, frames_copy)
    for k in range(2):
        rbm = stack.rbms[k]
        rbm.apply_update(rbm.compute_update(stack.stage_input(frames, k)))
    path = tmp_path / "stack.pt"
    stack.save(path)
    again = RBMStack.load(path, device="cpu")
    torch.testing.assert_close(again.transform(frames, 1), stack.transform(frames, 1))
    with pytest.raises(ValueError, match="expects"):
        stack.preprocess(torch.zeros(2, 3, 24, 24, dtype=torch.uint8))
    other = RBMStack(
        StackConfig(input_size=24, stages=(StageConfig(field=5, pool=2),)), device="cpu"
    )
    with pytest.raises(ValueError, match="different StackConfig"):
        other.load_state_dict(stack.state_dict())
