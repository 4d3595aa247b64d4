"""The Ray decode pool: real actors, results for every job, CPU left for Ray's own tasks."""

from __future__ import annotations

import os

from pipeline.decode import DecodeConfig
from pipeline.pool import ACTOR_NUM_CPUS, DecodePool
from pipeline.shards import ShardConfig
from pipeline.video_job import VideoJob
from tests.pipeline.conftest import make_video


def test_two_actors_decode_all_jobs_and_leave_a_cpu_free(tmp_path, ray_cluster):
    ray = ray_cluster
    paths = [make_video(tmp_path / f"v{i}.mp4", n_frames=10 + i, seed=i) for i in range(3)]
    (tmp_path / "bad.mp4").write_bytes(b"")
    jobs = [VideoJob(str(p), str(p), str(tmp_path), DecodeConfig(input_size=8), ShardConfig())
            for p in [*paths, tmp_path / "bad.mp4"]]
    with DecodePool(2) as pool:
        # Two actors hold 2 * 0.5 CPU: a 1-CPU Ray task still gets scheduled beside them.
        assert ACTOR_NUM_CPUS * 2 <= ray.cluster_resources()["CPU"] - 1
        assert ray.get(ray.remote(num_cpus=1)(lambda: 42).remote(), timeout=60) == 42
        results = {r.source: r for r in pool.map_unordered(jobs)}
    assert {s: r.frames for s, r in results.items() if r.status == "ok"} == {
        str(p): 10 + i for i, p in enumerate(paths)
    }
    assert results[str(tmp_path / "bad.mp4")].status == "failed"
    # each actor is its own process (a real pool, not the driver)
    with DecodePool(2) as pool:
        pids = set(ray.get([a.__ray_call__.remote(lambda self: os.getpid())
                            for a in pool._actors]))
    assert len(pids) == 2 and os.getpid() not in pids


def test_pool_shrinks_to_the_free_cpus_instead_of_hanging(ray_cluster):
    import pytest

    free = ray_cluster.available_resources()["CPU"]
    with pytest.warns(UserWarning, match="fit in the"), DecodePool(1000) as pool:
        assert pool.n_workers == int(free // ACTOR_NUM_CPUS) < 1000


class _CrashOnSomeFiles:
    """Actor body that dies (like a decoder segfault) on file names containing "BOOM"."""

    def ready(self) -> bool:
        return True

    def run(self, job):
        if "BOOM" in os.path.basename(job.source):
            os._exit(1)
        from pipeline.video_job import ingest_video

        return ingest_video(job)


def test_a_crashing_decoder_fails_only_its_video(tmp_path, ray_cluster):
    good = [make_video(tmp_path / f"g{i}.mp4", n_frames=5, seed=i) for i in range(3)]
    bad = make_video(tmp_path / "BOOM.mp4", n_frames=5)
    jobs = [VideoJob(str(p), str(p), str(tmp_path), DecodeConfig(input_size=8), ShardConfig())
            for p in [good[0], bad, good[1], good[2]]]
    with DecodePool(1, actor_class=_CrashOnSomeFiles) as pool:
        results = {r.source: r for r in pool.map_unordered(jobs)}
    assert results[str(bad)].status == "failed"
    assert "crashed" in results[str(bad)].error
    assert all(results[str(p)].status == "ok" and results[str(p)].frames == 5 for p in good), [
        (r.status, r.frames, r.error) for r in results.values()]
