"""Kill-and-resume for real: SIGKILL an ingest subprocess mid-way, re-run, exactly-once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from pipeline.shards import sha256_file
from tests.pipeline.conftest import cv2_frames, make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_killed_ingest_resumes_with_every_frame_exactly_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    videos = [make_video(src / f"v{i}.mp4", n_frames=120, w=320, h=240, seed=i) for i in range(5)]
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "jobs.ingest", str(src), "--out", str(out), "--input-size", "0",
           "--colour", "--shard-rows", "8", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # The killed run decodes in-process (--workers 0), so one SIGKILL stops all of its work.
    proc = subprocess.Popen(cmd + ["--workers", "0"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = len(json.loads((out / "_manifest.json").read_text())["videos"]) if (
                out / "_manifest.json").exists() else 0
            if committed >= 1 and len(list(out.glob("*.parquet"))) >= 20:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "ingest finished before the kill: make the test videos longer"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    manifest = json.loads((out / "_manifest.json").read_text())
    done = [v for v in manifest["videos"] if v["status"] == "ok"]
    assert 1 <= len(done) < len(videos)  # killed part-way
    on_disk = {p.name for p in out.glob("*.parquet")}
    assert on_disk > {s["path"] for s in manifest["shards"]}  # uncommitted shards exist

    # Re-run the same command (decoding now on Ray actors): resumes.
    result = subprocess.run(cmd + ["--workers", "2"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipped (done before): {len(done)}" in result.stdout

    manifest = json.loads((out / "_manifest.json").read_text())
    assert {p.name for p in out.glob("*.parquet")} == {s["path"] for s in manifest["shards"]}
    assert not list(out.glob(".*tmp"))
    for s in manifest["shards"]:
        assert sha256_file(out / s["path"]) == s["sha256"]
    table = pads.dataset(str(out), format="parquet").to_table(columns=["source", "frame_index"])
    keys = list(zip(table.column("source").to_pylist(), table.column("frame_index").to_pylist(),
                    strict=True))
    assert len(keys) == len(set(keys))  # no frame twice
    expected = {(f"src/{v.name}#{sha256_file(v)[:12]}", i)
                for v in videos for i in range(len(cv2_frames(v)))}
    assert set(keys) == expected  # no frame missing


def _stop_and_kill_at(point: str, cmd: list[str], env: dict) -> None:
    """Run ``cmd`` until it stops itself at the pause point ``point`` (SIGSTOP, see
    pipeline.pause_points), then SIGKILL it there: a kill at an exact moment, with no race."""
    proc = subprocess.Popen(cmd, cwd=REPO, env={**env, "CATNEURON_PAUSE_AT": point},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        pid = status = 0
        while not pid and time.monotonic() < deadline:
            pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            time.sleep(0.01)  # waiting for a state, not racing one
        assert pid and os.WIFSTOPPED(status), f"the ingest never stopped at {point}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("point, left", [
    ("shard:before-publish", {"tmp": 1, "parquet": 0, "manifest": False}),  # before any shard
    ("shard:published", {"tmp": 0, "parquet": 1, "manifest": False}),  # one shard, no manifest
    ("write:_manifest.json", {"tmp": 1, "parquet": 2, "manifest": False}),  # first publish
    ("write:_manifest.json@2", {"tmp": 1, "parquet": 4, "manifest": True}),  # a later one
])
def test_an_ingest_killed_at_any_moment_resumes_with_each_frame_once(tmp_path, point, left):
    src = tmp_path / "src"
    src.mkdir()
    videos = [make_video(src / f"v{i}.mp4", n_frames=7, w=32, h=24, seed=i) for i in range(3)]
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "jobs.ingest", str(src), "--out", str(out), "--input-size", "8",
           "--shard-rows", "4", "--workers", "0", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    _stop_and_kill_at(point, cmd, env)
    assert len(list(out.glob(".*.tmp"))) == left["tmp"]  # the moment the kill hit
    assert len(list(out.glob("*.parquet"))) == left["parquet"]
    assert (out / "_manifest.json").exists() == left["manifest"]

    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if left["parquet"] > 2 * left["manifest"]:  # shards the killed run never committed
        assert "an interrupted run left uncommitted" in result.stdout
    manifest = json.loads((out / "_manifest.json").read_text())
    assert {p.name for p in out.glob("*.parquet")} == {s["path"] for s in manifest["shards"]}
    assert not list(out.glob(".*"))
    table = pads.dataset(str(out), format="parquet").to_table(columns=["source", "frame_index"])
    keys = list(zip(table.column("source").to_pylist(), table.column("frame_index").to_pylist(),
                    strict=True))
    expected = {(f"src/{v.name}#{sha256_file(v)[:12]}", i)
                for v in videos for i in range(len(cv2_frames(v)))}
    assert len(keys) == len(set(keys)) and set(keys) == expected  # each frame exactly once
