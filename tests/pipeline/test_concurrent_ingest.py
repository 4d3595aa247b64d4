"""Two ingests into one dataset folder at once: the second is refused, nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.ingest import main
from pipeline.reader import read_frames
from tests.pipeline.conftest import make_video

REPO = Path(__file__).resolve().parents[2]


def _stopped_ingest(src: Path, out: Path, point: str) -> subprocess.Popen:
    """An ingest subprocess of ``src`` into ``out`` stopped (SIGSTOP) at the pause point."""
    cmd = [sys.executable, "-m", "jobs.ingest", str(src), "--out", str(out), "--input-size", "8",
           "--workers", "0", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO), CATNEURON_PAUSE_AT=point)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    pid = status = 0
    while not pid and time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        time.sleep(0.01)
    if not (pid and os.WIFSTOPPED(status)):
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the ingest never stopped at {point}")
    return proc


def test_a_second_ingest_into_a_folder_being_ingested_is_refused(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for i in range(3):
        make_video(first / f"a{i}.mp4", n_frames=5, w=32, h=24, seed=i)
        make_video(second / f"b{i}.mp4", n_frames=5, w=32, h=24, seed=10 + i)
    out = tmp_path / "data"
    # the first is stopped with its second video's shard published but not yet committed
    proc = _stopped_ingest(first, out, "shard:published@2")
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        assert main([str(second), "--out", str(out), "--input-size", "8", "--workers", "0",
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "another catneuron ingest" in err and err.count("\n") == 1, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert {p.name for p in out.glob("*.parquet")} == {s["path"] for s in manifest["shards"]}
    assert len(read_frames(out)) == 15
    # once the first has ended, the second runs
    assert main([str(second), "--out", str(out), "--input-size", "8", "--workers", "0",
                 "--quiet"]) == 0
    assert len(read_frames(out)) == 30
