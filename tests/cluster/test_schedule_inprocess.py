"""The synchronous schedule with the actor bodies called in-process (no Ray): workers compute on
CPU, or on CUDA when present, and the shards' result equals the single-process reference on the
same device. (The Ray tests in test_trainer.py run the same classes as actors.)"""

from __future__ import annotations

import pytest
import torch

from cluster.ps import ParameterShard
from cluster.reference import sync_reference
from cluster.sharding import ShardLayout, to_numpy
from cluster.worker import Worker
from jobs.config import load
from models.stack import RBMStack
from tests.cluster.data import make_dataset

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["sgd", "adagrad"])
def test_inprocess_sync_schedule_equals_reference(tmp_path, device, method):
    data = make_dataset(tmp_path / "data", size=16, n_videos=3, frames_per_video=64,
                        shard_rows=32)
    cfg = load(None, [
        f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=16",
        "model.input_size=16",
        "model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1, "
        "sparsity_target=0.1}]",
        "update.learning_rate=0.01", f'update.method="{method}"', "train.mode=\"sync\"",
        "train.n_workers=2", "train.n_ps_shards=3", f'train.device="{device}"'])
    steps = 6
    stack = RBMStack(cfg.model, update=cfg.update, device="cpu",
                     generator=torch.Generator().manual_seed(cfg.train.seed))
    rbm = stack.rbms[0]
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 3)
    full = to_numpy(rbm.params)
    shards = [ParameterShard(j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names),
                             layout.split(full, j)) for j in range(3)]
    workers = [Worker(k, cfg, 0, layout.to_dict()) for k in range(2)]
    parts = [s.params_now() for s in shards]
    for step in range(steps):
        outs = [w.compute(step, *parts) for w in workers]
        parts = [shards[j].apply_sync(step, *[o[j] for o in outs]) for j in range(3)]
        assert "recon_error" in outs[0][-1] if step == 0 else True
    got = layout.join(parts)
    ref = sync_reference(cfg, stage=0, steps=steps, device=device).rbms[0].params
    atol = 1e-6 if device == "cpu" else 1e-4  # CUDA matmuls may reorder sums
    for k in got:
        torch.testing.assert_close(got[k], ref[k].cpu(), rtol=0, atol=atol)
    init = torch.from_numpy(full["W"])
    assert (got["W"] - init).abs().max() > 1e-4
