"""Ctrl-C during ``catneuron train``: exit 130, one line naming where it stopped and the command
that continues the run, the last checkpoint intact (a real run in a subprocess, real SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.state_file import load_state
from tests.cluster.data import make_dataset
from tests.jobs.conftest import sigint_restored

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_exits_130_with_the_resume_command(tmp_path, sig):
    """SIGTERM (what ``kill`` and ``timeout`` send) printed Ray's C++ stack dump and no way
    on; it now stops the run as Ctrl-C does."""
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=64, size=16,
                        shard_rows=32)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "jobs.train", f'--data.path="{data}"', "--data.batch_size=16",
           "--model.input_size=16", "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]",
           "--train.stages=1", "--workers", "1", "--ps-shards", "1", "--mode", "sync",
           "--steps", "1000000", "--train.checkpoint_every=5", "--train.log_interval=1",
           "--sim.num_cpus=2", "--run-dir", str(run), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_restored)
    latest = run / "checkpoints" / "stage0" / "LATEST"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() != "step00000000":
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "SIGTERM received" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("catneuron train: interrupted at stage 0 step ")
    assert last.endswith(f"continue with `catneuron train --run-dir {run} --resume`")
    step = int(last.split(" step ")[1].split(";")[0])
    assert step >= 5
    folder = latest.parent / latest.read_text().strip()
    meta = load_state(folder / "meta.pt")
    assert meta["step"] <= step and load_state(folder / "shard0.pt")["index"] == 0
