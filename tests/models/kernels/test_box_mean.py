"""box_mean: every window mean the same float as F.avg_pool2d, on the numba kernel's path
and on the paths it leaves to torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.kernels import box_mean as box_module
from models.kernels.box_mean import box_mean

pytestmark = pytest.mark.skipif(not box_module.HAVE_NUMBA, reason="numba not installed")


@pytest.mark.parametrize(("shape", "r", "stride", "dtype"), [
    ((64, 1, 72, 72), 7, 1, torch.float32),   # the demo's tied stage, largest level
    ((5, 1, 40, 40), 7, 1, torch.float32),
    ((3, 2, 30, 41), 5, 2, torch.float64),    # channels, a stride, a wide map
    ((4, 1, 16, 16), 16, 1, torch.float32),   # one window: the whole map
    ((8, 3, 20, 23), 3, 3, torch.float32),
    ((2, 1, 9, 9), 1, 1, torch.float32),
])
def test_each_window_mean_is_avg_pool2ds_float(shape, r, stride, dtype):
    g = torch.Generator().manual_seed(sum(shape) + r)
    for x in (torch.rand(shape, generator=g, dtype=dtype) * 255,  # pixel-like
              torch.randn(shape, generator=g, dtype=dtype) * 1e-3 + 7.0):  # cancellation-prone
        got = box_mean(x, r, stride)
        assert got.dtype == x.dtype
        assert torch.equal(got, F.avg_pool2d(x, r, stride))


def test_inputs_it_does_not_take_go_to_avg_pool2d(monkeypatch):
    """Gradients, non-contiguous maps and other dtypes are avg_pool2d's (the kernel is not
    called); the values and gradient are then avg_pool2d's own."""
    calls = []
    monkeypatch.setattr(box_module, "_box_mean", lambda *a: calls.append(a))
    x = torch.rand(2, 1, 12, 12, requires_grad=True)
    box_mean(x, 3, 1).sum().backward()
    assert torch.allclose(x.grad[0, 0, 5, 5], torch.tensor(1.0))  # 9 windows of 1/9 each
    wide = torch.rand(2, 1, 12, 24)[..., ::2]
    assert torch.equal(box_mean(wide, 3, 1), F.avg_pool2d(wide, 3, 1))
    half = torch.rand(2, 1, 12, 12).half()
    assert torch.equal(box_mean(half, 3, 2), F.avg_pool2d(half, 3, 2))
    assert calls == []


def test_a_window_larger_than_the_map_is_refused():
    with pytest.raises(ValueError, match="window 9 is larger than the map"):
        box_mean(torch.zeros(1, 1, 8, 8), 9, 1)


def test_the_tied_stages_patch_normalisation_is_unchanged_by_it(monkeypatch):
    """A tied k-means stage's maps (float32, as trained) are the same floats with the kernel
    as with avg_pool2d."""
    from models.stages import tied
    from models.stages.config import StageConfig

    st = StageConfig(kind="tied", learner="kmeans", field=7, n_maps=4, pool=3, pool_stride=2,
                     pool_kind="rms", sign_split=True, rows_per_frame=20)
    stage = tied.TiedStage(st, (1, 40, 40), generator=torch.Generator().manual_seed(0),
                           update=None, device="cpu", dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    v = torch.rand(6, 1, 40, 40, generator=g)
    stage.prepare(v, "exemplar", g)
    fast = stage.maps(v)["pooled"]
    monkeypatch.setattr(tied, "box_mean", F.avg_pool2d)
    assert torch.equal(fast, stage.maps(v)["pooled"])
