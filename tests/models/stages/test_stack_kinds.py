"""A stack of a tied stage under a competitive pyramid stage: geometry checks, what each stage
reads, save/load with the fitted whitening, and the differentiable up-pass."""

from __future__ import annotations

import pytest
import torch

from models.neurons.units import layer_maps, layer_shape, stage_maps, up_pass
from models.pooling import pyramid
from models.stack import RBMStack, StackConfig

TIED = {"kind": "tied", "learner": "kmeans", "field": 3, "n_maps": 4, "pool": 2,
        "pool_stride": 2, "pool_kind": "rms", "sign_split": True, "rows_per_frame": 8}
TOP = {"kind": "competitive", "learner": "rbm", "field": 2, "n_maps": 6, "dims": 10,
       "sizes": [16, 12], "rows_per_frame": 4}


def _config(**top):
    return StackConfig.from_dict({"input_size": 16, "channels": 1, "input_lcn_sigma": 0.0,
                                  "stages": [TIED, {**TOP, **top}]})


def _prepared(seed=0):
    stack = RBMStack(_config(), device="cpu", dtype=torch.float64,
                     generator=torch.Generator().manual_seed(seed))
    frames = torch.randint(0, 256, (12, 1, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed + 1))
    stack.prepare(0, frames)
    stack.prepare(1, frames)
    return stack, frames


def test_geometry_and_layer_shapes():
    cfg = _config()
    assert cfg.level_shapes(1) == [(8, 7, 7), (8, 5, 5)]
    assert cfg.layer_shapes(0)["hidden"] == (4, 14, 14)
    assert layer_shape(cfg, 0, "pooled") == (8, 7, 7)
    assert layer_shape(cfg, 1, "pooled") == (6, 1, 1)
    with pytest.raises(ValueError, match="stage 1 .competitive. has"):
        layer_shape(cfg, 1, "hidden")


@pytest.mark.parametrize("change, match", [
    ({"dims": 100}, "dims=100 > 8x2x2"),
    ({"sizes": [16, 3]}, r"stages\[0\] \(at stages\[1\].sizes 3\).field=3 > input 3|pool=2 > 1"),
    ({"n_maps": 1}, "n_maps"),
])
def test_impossible_geometry_names_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        _config(**change)


def test_a_pyramid_needs_tied_stages_below_and_competition_at_the_top():
    local = {"field": 3, "n_maps": 2, "pool": 2}
    with pytest.raises(ValueError, match="below a pyramid must be tied"):
        StackConfig.from_dict({"input_size": 16, "stages": [local, TOP]})
    with pytest.raises(ValueError, match="must be the top stage"):
        StackConfig.from_dict({"input_size": 16, "stages": [{**TOP, "sizes": []}, local]})


def test_the_top_stage_reads_stage_0_at_each_size():
    stack, frames = _prepared()
    levels = stack.reads(frames, 1)
    x = frames.double() / 255
    for level, size in zip(levels, (16, 12), strict=True):
        below = stack.stages[0].maps(pyramid(x, [size])[0])["pooled"]
        torch.testing.assert_close(level, below)


def test_save_load_keeps_the_whitening_and_the_outputs(tmp_path):
    stack, frames = _prepared()
    stack.save(tmp_path / "s.pt")
    back = RBMStack.load(tmp_path / "s.pt", dtype=torch.float64)
    torch.testing.assert_close(back.transform(frames, 1), stack.transform(frames, 1))
    fresh = RBMStack(_config(), device="cpu", dtype=torch.float64)
    assert not torch.allclose(fresh.stages[1].white["weight"], stack.stages[1].white["weight"])


def test_up_pass_equals_the_fast_path_and_has_gradients():
    stack, frames = _prepared()
    fast = dict(stage_maps(stack, frames))
    x = (frames.double() / 255).requires_grad_()
    for k in (0, 1):
        torch.testing.assert_close(up_pass(stack, x, k, "pooled"), fast[k]["pooled"])
        torch.testing.assert_close(layer_maps(stack, x, k, "pooled"), fast[k]["pooled"])
    up_pass(stack, x, 1).sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_training_step_through_the_stack():
    stack, frames = _prepared()
    for k in (0, 1):
        rbm = stack.rbms[k]
        before = {n: p.clone() for n, p in rbm.params.items()}
        rbm.apply_update(rbm.compute_update(stack.stage_input(frames, k)))
        assert any(not torch.equal(before[n], p) for n, p in rbm.params.items())
