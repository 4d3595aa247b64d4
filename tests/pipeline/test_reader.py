"""Reader: round trips through pyarrow.dataset and ray.data, worker splits, shuffling."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest

from pipeline import reader as reader_module
from pipeline.reader import FrameReader, ShardFrames, list_shards, read_frames, shards_for_worker
from pipeline.shards import ShardWriter, commit_video, empty_manifest, write_manifest


@pytest.fixture
def dataset(tmp_path):
    """3 videos x 23 frames (C=2, 5x4) in shards of <= 10 rows; pixel[0,0,0] = video*100+index."""
    m = empty_manifest({})
    expected = []
    for v in range(3):
        x = np.random.default_rng(v).integers(0, 256, (23, 5, 4, 2), dtype=np.uint8)
        x[:, 0, 0, 0] = v * 30 + np.arange(23)
        expected.append(x)
        with ShardWriter(tmp_path, f"v{v}", max_rows=10) as w:
            w.write(f"video{v}", x[:12], np.arange(12), np.arange(12) * 40.0)
            w.write(f"video{v}", x[12:], np.arange(12, 23), np.arange(12, 23) * 40.0)
            shards = w.finalize()
        commit_video(m, {"source": f"video{v}", "status": "ok", "frames": 23, "error": None},
                     shards)
    write_manifest(tmp_path, m)
    (tmp_path / "_videos").mkdir()  # side folders a dataset may hold must not confuse readers
    (tmp_path / "_videos" / "x.mp4").write_bytes(b"not parquet")
    return tmp_path, np.concatenate(expected).transpose(0, 3, 1, 2)  # (N, C, H, W)


def test_read_frames_round_trip(dataset):
    root, want = dataset
    np.testing.assert_array_equal(read_frames(root), want)
    np.testing.assert_array_equal(read_frames(root, limit=15), want[:15])
    assert len(list_shards(root)) == 9


def test_pyarrow_dataset_reads_the_folder_as_is(dataset):
    root, want = dataset
    table = pads.dataset(str(root), format="parquet").to_table()
    assert table.num_rows == len(want)
    got = {(s, i): p for s, i, p in zip(table.column("source").to_pylist(),
                                        table.column("frame_index").to_pylist(),
                                        table.column("pixels").to_pylist(), strict=True)}
    for v in range(3):
        for i in range(23):
            frame = want[v * 23 + i].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
            assert got[(f"video{v}", i)] == frame.tobytes()


def test_ray_data_reads_the_folder_as_is(dataset, ray_cluster):
    import ray

    root, want = dataset
    ds = ray.data.read_parquet(str(root))
    rows = ds.take_all()
    assert len(rows) == len(want)
    by_key = {(r["source"], r["frame_index"]): r["pixels"] for r in rows}
    frame = want[2 * 23 + 5].transpose(1, 2, 0)
    assert by_key[("video2", 5)] == frame.tobytes()


@pytest.mark.parametrize("n_workers", [1, 2, 4, 12])
def test_worker_splits_are_disjoint_and_cover(dataset, n_workers):
    root, want = dataset
    shards = list_shards(root)
    parts = [shards_for_worker(shards, i, n_workers) for i in range(n_workers)]
    flat = [s for p in parts for s in p]
    assert sorted(flat) == sorted(shards) and len(flat) == len(set(flat))
    frames = np.concatenate([b for i in range(n_workers)
                             for b in FrameReader(root, batch_size=4, worker_index=i,
                                                  n_workers=n_workers)])
    assert sorted(frames[:, 0, 0, 0].tolist()) == sorted(want[:, 0, 0, 0].tolist())
    assert sum(FrameReader(root, batch_size=4, worker_index=i, n_workers=n_workers).num_rows()
               for i in range(n_workers)) == len(want)


def test_shuffled_reader_is_a_deterministic_permutation(dataset):
    root, want = dataset
    r = FrameReader(root, batch_size=8, shuffle_buffer=16, seed=3)
    a = list(r)
    b = list(r)
    assert [x.shape for x in a] == [(8, 2, 5, 4)] * 8 + [(5, 2, 5, 4)]
    ka = np.concatenate(a)[:, 0, 0, 0]
    assert np.array_equal(ka, np.concatenate(b)[:, 0, 0, 0])  # same order every pass
    assert sorted(ka.tolist()) == sorted(want[:, 0, 0, 0].tolist())  # each frame once
    assert not np.array_equal(ka, want[:, 0, 0, 0])  # actually shuffled
    c = np.concatenate(list(FrameReader(root, batch_size=8, shuffle_buffer=16, seed=4)))
    assert not np.array_equal(c[:, 0, 0, 0], ka)
    d = list(FrameReader(root, batch_size=8, shuffle_buffer=16, drop_last=True))
    assert len(d) == 8 and all(len(x) == 8 for x in d)


def test_unshuffled_reader_keeps_order(dataset):
    root, want = dataset
    got = np.concatenate(list(FrameReader(root, batch_size=7)))
    np.testing.assert_array_equal(got, want)


@pytest.fixture
def reads(monkeypatch):
    """The shard paths decoded from their files, in order (``_shard_frames`` counted)."""
    seen = []
    real = reader_module._shard_frames
    monkeypatch.setattr(reader_module, "_shard_frames", lambda p: seen.append(p) or real(p))
    return seen


@pytest.mark.parametrize("shuffle", [0, 16])
def test_kept_shards_give_the_same_batches_and_are_read_once(dataset, reads, shuffle):
    root, _ = dataset
    plain = [list(FrameReader(root, batch_size=8, shuffle_buffer=shuffle, seed=e))
             for e in range(3)]
    n_shards = len(list_shards(root))
    assert len(reads) == 3 * n_shards
    kept, reads[:] = ShardFrames(10**9), []
    for e in range(3):  # three epochs, as a worker's stream makes them
        got = list(FrameReader(root, batch_size=8, shuffle_buffer=shuffle, seed=e, frames=kept))
        for a, b in zip(got, plain[e], strict=True):
            np.testing.assert_array_equal(a, b)
        for batch in got:  # what a caller does to a batch does not reach the next epoch
            batch[...] = 0
    assert len(reads) == n_shards  # each shard decoded once
    assert kept.nbytes == sum(x.nbytes for x in plain[0])


def test_shards_past_the_budget_are_read_each_time(dataset, reads):
    root, _ = dataset
    one_shard = read_frames(root, shards=list_shards(root)[:1]).nbytes
    reads.clear()
    kept = ShardFrames(one_shard)
    for _ in range(2):
        list(FrameReader(root, batch_size=8, frames=kept))
    n_shards = len(list_shards(root))
    assert kept.nbytes == one_shard and len(reads) == 2 * n_shards - 1
    with pytest.raises(ValueError, match="budget_bytes"):
        ShardFrames(-1)


def test_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="catneuron ingest"):
        list_shards(tmp_path)
    with pytest.raises(ValueError):
        shards_for_worker(["a"], 2, 2)


def test_shards_are_read_in_name_order_whatever_order_the_ingest_finished_them(dataset):
    """Decode actors finish videos in any order and the manifest lists shards as they came;
    readers take them by name, so every ingest of the same videos reads the same frames in the
    same order (the held-out shard, the workers' split and frame ids follow it)."""
    import json

    root, want = dataset
    manifest = json.loads((root / "_manifest.json").read_text())
    names = [s["path"] for s in manifest["shards"]]
    manifest["shards"] = manifest["shards"][::-1]  # video 2 finished first, then 1, then 0
    (root / "_manifest.json").write_text(json.dumps(manifest))
    assert [p.rsplit("/", 1)[-1] for p in list_shards(root)] == sorted(names)
    np.testing.assert_array_equal(read_frames(root), want)
