"""pipeline.video_job: one video decoded and written as shards, without Ray."""

from __future__ import annotations

from pipeline import video_job
from pipeline.decode import DecodeConfig, iter_frames
from pipeline.shards import ShardConfig
from tests.pipeline.conftest import make_video


def test_error_part_way_leaves_no_shard_of_that_video(tmp_path, monkeypatch):
    video = make_video(tmp_path / "a.mp4", n_frames=30)

    def failing(path, config, info_out=None):
        for i, batch in enumerate(iter_frames(path, config, info_out)):
            if i == 2:
                raise OSError("disk full")
            yield batch

    monkeypatch.setattr(video_job, "iter_frames", failing)
    out = tmp_path / "data"
    out.mkdir()
    job = video_job.VideoJob(str(video), str(video), str(out),
                             DecodeConfig(input_size=8, batch_frames=5), ShardConfig(max_rows=5))
    result = video_job.ingest_video(job)
    assert result.status == "failed" and "disk full" in result.error
    assert not list(out.iterdir())  # the two shards written before the error are gone
