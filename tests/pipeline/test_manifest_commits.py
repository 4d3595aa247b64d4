"""The manifest written in groups during an ingest: every video while it is small, O(N) bytes
over N videos, stale shards deleted only after a write that drops them, and what is pending
written on a Ctrl-C."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pipeline.ingest as ingest_module
import pipeline.manifest_commits as commits_module
from pipeline.ingest import IngestConfig, run_ingest
from pipeline.manifest_commits import ManifestCommits
from pipeline.shards import ShardInfo, ShardWriter, empty_manifest, read_manifest
from pipeline.video_job import VideoResult


def _record(i: int) -> dict:
    return {"source": f"video{i}", "status": "ok", "frames": 1, "error": None}


def _shard(i: int) -> list[ShardInfo]:
    return [ShardInfo(f"video{i}-00000.parquet", 1, "0" * 64)]


@pytest.fixture()
def writes(monkeypatch):
    """The number of videos in the manifest at each write."""
    sizes: list[int] = []
    real = commits_module.write_manifest

    def counted(root, manifest):
        sizes.append(len(manifest["videos"]))
        real(root, manifest)

    monkeypatch.setattr(commits_module, "write_manifest", counted)
    return sizes


def test_every_video_is_written_while_the_manifest_is_small(tmp_path, writes):
    commits = ManifestCommits(tmp_path, empty_manifest({}), growth=0.1)
    for i in range(10):
        commits.add(_record(i), _shard(i))
        assert read_manifest(tmp_path)["videos"][-1]["source"] == f"video{i}"
    assert writes == list(range(1, 11))


def test_bytes_written_stay_linear_and_a_kill_loses_only_the_pending_group(tmp_path, writes):
    n, growth = 2000, 0.05
    commits = ManifestCommits(tmp_path, empty_manifest({}), growth=growth)
    for i in range(n):
        commits.add(_record(i), _shard(i))
        on_disk = writes[-1]  # a kill now leaves this manifest
        assert i + 1 - on_disk <= max(1, growth * on_disk) + 1
    assert len(writes) < 200  # not one a video
    assert sum(writes) < (2 + 1 / growth) * n  # per-video writes: n (n + 1) / 2 = 2,001,000
    commits.flush()
    assert writes[-1] == n and read_manifest(tmp_path)["videos"][-1]["source"] == f"video{n - 1}"


def _write_shards(root, prefix: str, n: int) -> list[ShardInfo]:
    with ShardWriter(root, prefix, max_rows=1) as w:
        w.write(prefix, np.zeros((n, 2, 2, 1), np.uint8), np.arange(n), np.zeros(n))
        return w.finalize()


def test_a_replaced_videos_extra_shards_go_after_the_write_that_drops_them(tmp_path):
    commits = ManifestCommits(tmp_path, empty_manifest({}), growth=0.01)
    commits.add(_record(0) | {"source": "a"}, _write_shards(tmp_path, "a", 3))
    commits.growth = 10.0  # hold the next record back
    commits.add(_record(0) | {"source": "a"}, _write_shards(tmp_path, "a", 2))
    assert (tmp_path / "a-00002.parquet").exists()  # the manifest on disk still lists it
    assert "a-00002.parquet" in {s["path"] for s in read_manifest(tmp_path)["shards"]}
    commits.flush()
    assert not (tmp_path / "a-00002.parquet").exists()
    manifest = read_manifest(tmp_path)
    assert [s["path"] for s in manifest["shards"]] == ["a-00000.parquet", "a-00001.parquet"]
    assert [v["source"] for v in manifest["videos"]] == ["a"]


def test_ctrl_c_writes_the_finished_videos_not_yet_written(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    monkeypatch.setattr(commits_module, "GROWTH", 100.0)  # nothing written until the flush

    def interrupted(jobs, workers, pool=None):  # three videos decode, then Ctrl-C
        for i in range(3):
            yield VideoResult(f"v{i}", "ok", 2, _write_shards(out, f"v{i}", 2))
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_module, "_run_jobs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ingest([], out, IngestConfig(n_decoders=0), progress=False)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert [v["source"] for v in manifest["videos"]] == ["v0", "v1", "v2"]
    assert {s["path"] for s in manifest["shards"]} == {p.name for p in out.glob("*.parquet")}
