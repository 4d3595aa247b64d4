"""cluster.worker without Ray: the held-out shard, per-step seeds, the positioned batch stream,
and a Worker object started from a checkpoint (what a restarted actor does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.checkpoint import step_folder, write_meta
from cluster.config import DataConfig
from cluster.ps import OutOfStep
from cluster.sharding import ShardLayout
from cluster.worker import BatchStream, Worker, split_holdout, step_seed
from jobs.config import load
from models.stack import RBMStack
from pipeline.reader import list_shards
from tests.cluster.data import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 4 videos x 96 frames of 16x16, 48 rows per shard -> 8 shards
    return make_dataset(tmp_path_factory.mktemp("data"), size=16)


def test_the_last_shard_is_held_out_when_asked_and_there_are_two(dataset, tmp_path):
    shards = list_shards(dataset)
    assert len(shards) == 8
    assert split_holdout(str(dataset), 32) == (shards[:-1], shards[-1:])
    assert split_holdout(str(dataset), 0) == (shards, [])
    one = make_dataset(tmp_path / "one", n_videos=1, frames_per_video=20, shard_rows=48)
    assert split_holdout(str(one), 32) == (list_shards(one), [])


def test_step_seed_is_fixed_by_its_four_inputs_and_changes_with_each():
    base = step_seed(0, 1, 2, 3)
    assert base == step_seed(0, 1, 2, 3) and 0 <= base < 2**32
    others = {step_seed(1, 1, 2, 3), step_seed(0, 0, 2, 3), step_seed(0, 1, 0, 3),
              step_seed(0, 1, 2, 4), step_seed(0, 3, 2, 1)}  # the order matters too
    assert base not in others and len(others) == 5


def _stream(dataset, position=(0, 0), **data):
    shards = list_shards(dataset)[:2]  # 96 frames: 6 batches of 16 an epoch
    config = DataConfig(path=str(dataset), **{"batch_size": 16, **data})
    return BatchStream(config, shards, seed=5, position=position)


def test_the_stream_rolls_over_epochs_and_reshuffles(dataset):
    stream = _stream(dataset, shuffle_buffer=64)
    batches = [stream.next() for _ in range(8)]
    assert all(b.shape == (16, 1, 16, 16) and b.dtype == np.uint8 for b in batches)
    assert stream.position == (1, 2)  # 6 batches in epoch 0, then 2 of epoch 1
    epoch0 = np.concatenate(batches[:6])
    assert len({b.tobytes() for b in epoch0}) == 96  # every frame once, none twice
    assert not np.array_equal(batches[6], batches[0])  # epoch 1: seed + 1, another order


def test_seek_continues_exactly_where_the_stream_was(dataset):
    """A stream positioned at (epoch, batch), as a resumed worker is, yields the batches the
    uninterrupted stream yields from there."""
    full = _stream(dataset, shuffle_buffer=64)
    batches = [full.next() for _ in range(10)]
    resumed = _stream(dataset, position=(1, 2), shuffle_buffer=64)
    assert resumed.position == (1, 2)
    for expected in batches[8:]:
        np.testing.assert_array_equal(resumed.next(), expected)
    full.seek((0, 3))
    np.testing.assert_array_equal(full.next(), batches[3])
    assert full.position == (0, 4)


def test_mirror_flips_about_half_of_each_batch_the_same_way_after_a_resume(dataset):
    plain = _stream(dataset, shuffle_buffer=64)
    mirror = _stream(dataset, shuffle_buffer=64, mirror=True)
    flipped = 0
    batches = []
    for _ in range(8):
        a, b = plain.next(), mirror.next()
        batches.append(b)
        same = [np.array_equal(p, m) for p, m in zip(a, b, strict=True)]
        mirrored = [np.array_equal(p[..., ::-1], m) for p, m in zip(a, b, strict=True)]
        assert all(s or f for s, f in zip(same, mirrored, strict=True))
        flipped += sum(f and not s for s, f in zip(same, mirrored, strict=True))
    assert 0.3 < flipped / (8 * 16) < 0.7
    again = _stream(dataset, shuffle_buffer=64)  # the reader's frames were not flipped in place
    np.testing.assert_array_equal(again.next(), _stream(dataset, shuffle_buffer=64).next())
    resumed = _stream(dataset, position=(1, 0), shuffle_buffer=64, mirror=True)
    for expected in batches[6:]:
        np.testing.assert_array_equal(resumed.next(), expected)


def test_a_position_past_the_data_names_the_changed_dataset(dataset):
    with pytest.raises(ValueError, match="holds 6 batches an epoch, not the 9 its checkpoint"):
        _stream(dataset, position=(2, 9))


def test_a_stream_without_a_full_batch_names_the_setting(dataset):
    with pytest.raises(ValueError, match="this worker has no dataset shards"):
        BatchStream(DataConfig(path=str(dataset)), [], seed=0)
    stream = _stream(dataset, batch_size=200)
    with pytest.raises(ValueError, match="fewer than batch_size=200 frames; lower "
                                         "data.batch_size"):
        stream.next()


def _job(dataset, run_dir):
    return load(None, [
        f'--data.path="{dataset}"', "--data.batch_size=16", "--data.holdout_frames=32",
        "--model.input_size=16", "--model.input_lcn_sigma=1.5",
        "--model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1}]",
        '--train.mode="sync"', "--train.n_workers=2", "--train.n_ps_shards=2",
        "--train.stages=1", "--train.log_interval=4", f'--train.run_dir="{run_dir}"'])


def test_a_worker_starts_from_its_checkpoint_and_refuses_another_step(dataset, tmp_path):
    """A (re)started worker continues at the checkpoint's step and its own data position; a
    driver that asks it for any other step gets OutOfStep (and rolls back)."""
    job = _job(dataset, tmp_path / "run")
    rbm = RBMStack(job.model, update=job.update, device="cpu",
                   generator=torch.Generator().manual_seed(0)).rbms[0]
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 2)
    folder = step_folder(str(tmp_path / "stage0"), 8)
    (tmp_path / "stage0" / "step00000008").mkdir(parents=True)
    write_meta(folder, stage=0, step=8, config_text="", layout=layout,
               positions=[(0, 0), (1, 2)], seqs=[8, 8], worker_steps=[8, 8])
    worker = Worker(1, job, 0, layout.to_dict(), checkpoint=folder)
    assert worker.position() == (1, 2) and worker.next_step == 8
    parts = layout.split_all({k: v.numpy() for k, v in rbm.params.items()})
    with pytest.raises(OutOfStep, match="worker 1 is at step 8 .* asked for step 9"):
        worker.compute(9, *parts)
    *update, metrics = worker.compute(8, *parts)
    assert len(update) == 2 and metrics["worker"] == 1 and metrics["step"] == 8
    assert worker.position() == (1, 3) and worker.next_step == 9


def test_a_worker_ranks_its_frames_under_the_trained_weights_it_is_given(dataset, tmp_path):
    """``Worker.corpus_tops``: every unit's top frames among the shards it is given, under the
    parameters passed in (not its replica's), ids counted from each shard's first id; layers
    wider than ``max_units`` are left out, and with none left it stops after one batch."""
    from models.neurons.units import stage_maps
    from pipeline.reader import read_frames

    job = _job(dataset, tmp_path / "run")
    stack = RBMStack(job.model, update=job.update, device="cpu",
                     generator=torch.Generator().manual_seed(5))  # other weights than the worker's
    rbm = stack.rbms[0]
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 2)
    worker = Worker(0, job, 0, layout.to_dict())
    shards = list_shards(dataset)[:2]
    got = worker.corpus_tops({k: v.numpy() for k, v in rbm.params.items()},
                             [(shards[0], 1000), (shards[1], 0)], k=5, max_units=10_000)
    maps = dict(stage_maps(stack, torch.from_numpy(read_frames(dataset, shards=shards))))[0]
    assert set(got) == {layer for layer, m in maps.items() if m[0].numel() <= 10_000} != set()
    for layer, (values, got_ids) in got.items():
        r = maps[layer].flatten(1).T  # (units, frames)
        want = torch.topk(r, 5, dim=1)
        torch.testing.assert_close(torch.from_numpy(values), want.values, rtol=1e-5, atol=1e-5)
        g = torch.from_numpy(got_ids)
        column = torch.where(g >= 1000, g - 1000, g + 48)  # shard 0's 48 frames, then shard 1's
        torch.testing.assert_close(r.gather(1, column), want.values, rtol=1e-5, atol=1e-5)
    assert worker.corpus_tops({k: v.numpy() for k, v in rbm.params.items()},
                              [(shards[0], 0)], k=5, max_units=1) == {}


def test_a_worker_computes_with_subnormal_floats_flushed(dataset, tmp_path):
    """A Worker's thread flushes subnormals (``torch.set_flush_denormal``): a float32 below
    1.2e-38 counts as 0 in its arithmetic, where IEEE arithmetic keeps it (at a slow pace)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal
    assert (tiny * 2).item() > 0  # IEEE before (the autouse fixture restores it after)
    job = _job(dataset, tmp_path / "run")
    rbm = RBMStack(job.model, update=job.update, device="cpu").rbms[0]
    Worker(0, job, 0, ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 1).to_dict())
    assert (tiny * 2).item() == 0.0
    assert torch.get_num_threads() == 1
