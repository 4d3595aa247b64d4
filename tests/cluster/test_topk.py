"""Top-k over shards by real Ray actors equals a brute-force top-k over the whole dataset."""

from __future__ import annotations

import numpy as np
import torch

from cluster.topk import fetch_frames, scan_in_process, scan_with_actors
from models.layers import l2_pool
from models.stack import RBMStack, StackConfig, StageConfig
from pipeline.reader import list_shards, read_frames
from tests.cluster.data import make_dataset


def _model(path) -> RBMStack:
    config = StackConfig(input_size=16, channels=1, stages=(
        StageConfig(field=6, stride=2, n_maps=3, pool=2),
        StageConfig(field=2, stride=1, n_maps=2, pool=2)))
    g = torch.Generator().manual_seed(0)
    stack = RBMStack(config, generator=g, device="cpu")
    for rbm in stack.rbms:
        rbm.params["W"].normal_(0.0, 0.3, generator=g)
    stack.save(path)
    return stack


def test_actors_topk_equals_brute_force(ray_cluster, tmp_path):
    data = make_dataset(tmp_path / "data", n_videos=3, frames_per_video=40, size=16,
                        shard_rows=16)
    shards = list_shards(data)
    assert len(shards) >= 6
    stack = _model(tmp_path / "model.pt")
    units = {0: [0, 5, 30, 74], 1: [0, 7, 17]}
    k = 5
    seen = []
    got = scan_with_actors(str(tmp_path / "model.pt"), shards, units, k, n_actors=2,
                           batch_size=7, progress=seen.append)
    assert sum(seen) == 120
    frames = torch.from_numpy(read_frames(data))  # (120, 1, 16, 16), shard order
    ids = torch.cat([(i << 32) + torch.arange(len(read_frames(data, shards=[p])))
                     for i, p in enumerate(shards)])
    for stage, ix in units.items():
        st = stack.config.stages[stage]  # a pooled unit: L2 pooling of P(h|v), before LCN
        hidden = stack.rbms[stage].mean_hiddens(stack.stage_input(frames, stage))
        acts = l2_pool(hidden, st.pool, st.pool_stride).flatten(1)[:, ix]  # (120, U)
        top, where = torch.topk(acts.T, k, dim=1)
        torch.testing.assert_close(got[stage].values, top)
        assert torch.equal(got[stage].ids, ids[where])
    local = scan_in_process(str(tmp_path / "model.pt"), shards, units, k, batch_size=50)
    assert torch.equal(local[1].ids, got[1].ids)
    # the winners' pixels and provenance come back from their shards
    best = int(got[0].ids[0, 0])
    frame, meta = fetch_frames(np.array([best]), shards)[best]
    assert np.array_equal(frame, frames[int(where_first(ids, best))].numpy())
    assert meta["source"].startswith("video") and meta["frame_index"] >= 0


def where_first(ids: torch.Tensor, fid: int) -> int:
    return int((ids == fid).nonzero()[0, 0])
