"""``jobs.report.evaluation.unit_response``: one unit's responses, read from what its stage
reads, equal that unit's column of the full up-pass."""

from __future__ import annotations

import numpy as np
import torch

from jobs.report.evaluation import unit_response
from models.neurons.units import stage_maps
from models.stack import RBMStack, StackConfig, StageConfig

PYRAMID = StackConfig(input_size=24, input_lcn_sigma=0.0, stages=(
    StageConfig(kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, pool_stride=2,
                sign_split=True, rows_per_frame=4),
    StageConfig(kind="competitive", learner="rbm", field=3, n_maps=6, dims=8, sizes=(28, 20),
                rows_per_frame=4),
))


def test_one_units_response_is_its_column_of_the_full_up_pass():
    frames = np.random.default_rng(0).integers(0, 256, (7, 1, 24, 24), dtype=np.uint8)
    stack = RBMStack(PYRAMID, device="cpu", generator=torch.Generator().manual_seed(0))
    for k in (0, 1):
        stack.prepare(k, torch.from_numpy(frames), generator=torch.Generator().manual_seed(k))
    full = dict(stage_maps(stack, torch.from_numpy(frames)))
    for stage, index in ((1, 4), (0, 17)):
        want = full[stage]["pooled"].flatten(1)[:, index].double().numpy()
        got = unit_response(stack, frames, stage, "pooled", index, batch=3)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
