"""The benchmark's single-process loop trains any stage: a stage fitted to data starts prepared
exactly as the trainer's driver prepares it, and a given stack (earlier stages loaded) is used."""

from __future__ import annotations

import copy

import torch

from cluster.reference import SingleProcessLoop, sync_reference
from jobs.config import load
from tests.cluster.data import make_dataset

STAGES = ('model.stages=[{kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, '
          'pool_stride=2, pool_kind="rms", sign_split=true, rows_per_frame=8, '
          'learning_rate=0.1}, {kind="competitive", learner="rbm", field=2, n_maps=6, dims=10, '
          'sizes=[16, 12], rows_per_frame=4, learning_rate=0.05}]')


def test_loop_prepares_and_trains_each_stage(tmp_path):
    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    cfg = load(None, [f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
                      "model.input_size=16", "model.input_lcn_sigma=0.0", STAGES,
                      "train.stages=2", "train.prepare_frames=64"])
    loop = SingleProcessLoop(cfg, stage=0)
    prepared = sync_reference(cfg, stage=0, steps=0)  # prepared as the trainer's driver does
    torch.testing.assert_close(loop.stack.stages[0].zca["matrix"],
                               prepared.stages[0].zca["matrix"])
    assert not torch.equal(loop.stack.stages[0].zca["matrix"], torch.eye(9))
    before = loop.rbm.params["W"].clone()
    assert loop.run(2)["frames"] == 2 * 16 * 8  # rows: 8 patches per frame
    assert not torch.equal(loop.rbm.params["W"], before)

    sync_reference(cfg, stage=1, steps=0, stack=prepared)  # stage 1 prepared on stage 0
    top = SingleProcessLoop(cfg, stage=1, stack=prepared)
    assert top.stack is prepared and top.rbm is prepared.rbms[1]
    before = top.rbm.params["W"].clone()
    assert top.run(1)["frames"] == 16 * 4  # 2 windows per frame at each of 2 sizes
    assert not torch.equal(top.rbm.params["W"], before)


def test_loop_reads_the_stage_input_through_a_cache_with_the_same_result(tmp_path):
    """Stage 1's loop encodes each frame once (stage 0's maps, whitened: 96 frames, 12 steps of
    16, two epochs) and trains to the weights of a loop without the cache (which whitens the
    windows it samples one by one: equal up to float rounding)."""
    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    base = [f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
            "model.input_size=16", "model.input_lcn_sigma=0.0", STAGES, "train.stages=2",
            "train.prepare_frames=64"]
    prepared = sync_reference(load(None, base), stage=0, steps=0)
    sync_reference(load(None, base), stage=1, steps=0, stack=prepared)
    runs = {}
    for mb in (64, 0):
        cfg = load(None, [*base, f"train.read_cache_mb={mb}"])
        runs[mb] = SingleProcessLoop(cfg, stage=1, stack=copy.deepcopy(prepared))
        runs[mb].run(12)
    cache = runs[64].input.cache
    assert cache.misses == 96 and cache.hits == 12 * 16 - 96
    assert runs[0].input.cache is None
    torch.testing.assert_close(runs[64].rbm.params["W"], runs[0].rbm.params["W"],
                               rtol=1e-5, atol=1e-6)


def test_the_loop_caches_what_the_workers_whose_frames_it_reads_cache_together(tmp_path):
    """The single loop reads every worker's shards, so its cache gets every worker's budget:
    with a budget that holds one worker's half of the frames it still caches them all, filled
    before the first step as a worker's is, so no step encodes a frame."""
    from models.read_cache import bytes_per_frame

    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    base = [f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
            "model.input_size=16", "model.input_lcn_sigma=0.0", STAGES, "train.stages=2",
            "train.prepare_frames=64", "train.n_workers=2"]
    prepared = sync_reference(load(None, base), stage=0, steps=0)
    per_frame = bytes_per_frame(prepared.config, 1, prepared.dtype)
    mb = 48 * per_frame / 2**20  # one worker's 48 frames
    loop = SingleProcessLoop(load(None, [*base, f"train.read_cache_mb={mb}"]), stage=1,
                             stack=prepared)
    assert loop.input.cache.capacity == 96
    assert loop.fill_cache() == 96  # every training frame encoded before the first step
    loop.run(6)
    assert (loop.input.cache.misses, loop.input.cache.hits) == (96, 6 * 16)
