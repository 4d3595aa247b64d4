"""Top-k over shards by real Ray actors equals a brute-force top-k over the whole dataset."""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from cluster import topk
from cluster.topk import (
    TopKScanner,
    chunks,
    fetch_frames,
    scan_in_process,
    scan_shards,
    scan_with_actors,
    start_scanners,
)
from models.layers import l2_pool
from models.stack import RBMStack
from pipeline.reader import list_shards, read_frames
from tests.cluster.data import make_dataset, saved_random_stack


def _model(path) -> RBMStack:
    return saved_random_stack(path, seed=0)


UNITS = {0: [0, 5, 30, 74], 1: [0, 7, 17]}
K = 5


def frames_and_ids(data, shards) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame (120, 1, 16, 16) in shard order, and its id ``shard << 32 | row``."""
    frames = torch.from_numpy(read_frames(data))
    ids = torch.cat([(i << 32) + torch.arange(len(read_frames(data, shards=[p])))
                     for i, p in enumerate(shards)])
    return frames, ids


def assert_brute_force(got, stack, data, shards) -> None:
    """``got`` is the top-K over every frame of ``data`` of the pooled UNITS."""
    frames, ids = frames_and_ids(data, shards)
    for stage, ix in UNITS.items():
        st = stack.config.stages[stage]  # a pooled unit: L2 pooling of P(h|v), before LCN
        hidden = stack.rbms[stage].mean_hiddens(stack.stage_input(frames, stage))
        acts = l2_pool(hidden, st.pool, st.pool_stride).flatten(1)[:, ix]  # (120, U)
        top, where = torch.topk(acts.T, K, dim=1)
        torch.testing.assert_close(got[stage].values, top)
        assert torch.equal(got[stage].ids, ids[where])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(data folder, its 8 shards of 16 or 8 rows, model.pt, the stack)."""
    tmp = tmp_path_factory.mktemp("topk")
    data = make_dataset(tmp / "data", n_videos=3, frames_per_video=40, size=16, shard_rows=16)
    shards = list_shards(data)
    assert len(shards) >= 6
    return data, shards, str(tmp / "model.pt"), _model(tmp / "model.pt")


@pytest.mark.parametrize("driver_helps, start_s, started", [
    (False, None, 2),  # the actors do it all
    (True, 0.0, 2),  # actors pay at once: the driver scans the first chunk, then helps them
    (True, 1e6, 0),  # actors never pay: the driver scans it all, no actor starts
])
def test_actors_topk_equals_brute_force(ray_cluster, dataset, monkeypatch, driver_helps,
                                        start_s, started):
    data, shards, model, stack = dataset
    monkeypatch.setattr(topk, "CHUNK_FRAMES", 16)  # 7 chunks (8 shards of 16 or 8 frames)
    if start_s is not None:
        monkeypatch.setattr(topk, "ACTOR_START_S", start_s)
    starts = []
    real_start = topk.start_scanners
    monkeypatch.setattr(topk, "start_scanners",
                        lambda *a, **kw: starts.append(kw["n_actors"]) or real_start(*a, **kw))
    seen = []
    got = scan_with_actors(model, shards, UNITS, K, n_actors=2, batch_size=7,
                           progress=seen.append, driver_helps=driver_helps)
    assert sum(starts) == started
    assert sum(seen) == 120
    assert_brute_force(got, stack, data, shards)
    local = scan_in_process(model, shards, UNITS, K, batch_size=50)
    assert torch.equal(local[1].ids, got[1].ids)
    # the winners' pixels and provenance come back from their shards
    frames, ids = frames_and_ids(data, shards)
    best = int(got[0].ids[0, 0])
    frame, meta = fetch_frames(np.array([best]), shards)[best]
    assert np.array_equal(frame, frames[int(where_first(ids, best))].numpy())
    assert meta["source"].startswith("video") and meta["frame_index"] >= 0


def test_driver_and_ready_actors_share_the_chunks(ray_cluster, dataset):
    """With both actors ready, the driver scans one or two chunks (until it has seen them
    ready), the actors the rest; the merge is still the brute-force top-k."""
    data, shards, model, stack = dataset
    actors = start_scanners(model, UNITS, K, n_actors=2, batch_size=7)
    local = TopKScanner(model, UNITS, K, batch_size=7)
    try:
        got = scan_shards(actors, shards, K, local=local, chunk_frames=16)
        by_actor = [ray.get(a.result.remote())[0][1] for a in actors]  # ids (U, m) of stage 0
    finally:
        for a in actors:
            ray.kill(a)
    assert_brute_force(got, stack, data, shards)
    assert local.state[0].ids.shape[1] == K  # the driver scanned (at least one chunk) ...
    assert any(ids.shape[1] == K for ids in by_actor)  # ... and so did the actors


def test_actors_pay_when_the_rest_outlasts_twice_their_start_up():
    assert topk.actors_pay(10.1, start_s=5.0) and not topk.actors_pay(9.9, start_s=5.0)
    assert topk.actors_pay(2 * topk.ACTOR_START_S + 1) and not topk.actors_pay(0.0)


def test_chunks_group_consecutive_shards():
    shards = [f"s{i}" for i in range(5)]
    got = chunks(shards, [10, 10, 5, 30, 1], chunk_frames=20)
    assert got == [[(0, "s0"), (1, "s1")], [(2, "s2"), (3, "s3")], [(4, "s4")]]
    assert chunks(shards, [1] * 5, chunk_frames=100) == [list(enumerate(shards))]


def where_first(ids: torch.Tensor, fid: int) -> int:
    return int((ids == fid).nonzero()[0, 0])


def test_fetch_records_equals_fetch_frames_metadata_without_pixels(tmp_path):
    """Visualize ranks a pool of frames by their records, then reads the pixels of the picked."""
    from cluster.topk import ROW_BITS, fetch_records

    shards = list_shards(make_dataset(tmp_path / "data", n_videos=2, frames_per_video=30,
                                      shard_rows=16))
    ids = np.array([(s << ROW_BITS) | r for s in range(len(shards)) for r in (0, 3)] + [3])
    records = fetch_records(ids, shards)
    frames = fetch_frames(ids, shards)
    assert records.keys() == frames.keys() and len(records) == 2 * len(shards)
    for fid, record in records.items():
        assert record == {k: frames[fid][1][k] for k in ("source", "frame_index")}
    assert records[(1 << ROW_BITS) | 3] == {"source": "video0", "frame_index": 19}
