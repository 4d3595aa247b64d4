"""A run that diverges ends with one line naming the stage, the step and the setting to lower
(``catneuron train`` as a user runs it, on its own local Ray). The asynchronous schedule, where
the shard's error reaches the driver nested in a worker's task; the synchronous one is
tests/cluster/test_trainer.py::test_a_diverging_sync_run_fails_with_one_line (in process, on
the shared Ray cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.data import make_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_diverging_run_ends_with_one_line(tmp_path):
    data = make_dataset(tmp_path / "data", n_videos=3, size=16)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", f"--data.path={data}", "--data.batch_size=16",
         "--data.holdout_frames=32", "--model.input_size=16", "--model.input_lcn_sigma=1.5",
         "--model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1}]",
         "--update.learning_rate=1e30", "--train.stages=1", "--mode", "async", "--workers", "2",
         "--ps-shards", "2", "--steps", "60", "--train.log_interval=10",
         f"--run-dir={tmp_path / 'run'}", "--sim.num_cpus=2", "--quiet"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=400)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("catneuron train: error: stage 0 diverged at step "), lines
    assert "lower update.learning_rate (now 1e+30, try 1e+29)" in lines[0]
    assert "diverged at step" in (tmp_path / "run" / "events.log").read_text()
