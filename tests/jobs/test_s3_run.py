"""A whole run against an S3-compatible store (moto's server on 127.0.0.1): ``catneuron
ingest`` writes the dataset there, ``catneuron train`` reads it and writes its run folder there,
``--resume`` continues from the checkpoint stored there, and ``catneuron evaluate`` scores the
stored run (reading its model and, for the linear-filter baseline, the stored dataset) and writes
``evaluation.json`` there. Each step runs in its own process from its own empty folder, so no
local folder is shared between the steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cluster.state_io import read_state
from pipeline import storage
from tests.jobs.test_evaluate import BUILTIN, check_contract
from tests.pipeline.conftest import make_video

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "s3://catneuron/e2e"
STAGE = ("--model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1, "
         "sparsity_target=0.1}]")


def catneuron(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``catneuron ARGS`` in a fresh process whose working folder is ``cwd``."""
    cwd.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, text=True,
                            capture_output=True, timeout=600,
                            env={**env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train_args(run: str, steps: int) -> list[str]:
    return ["train", f"--data.path={BUCKET}/data", "--data.batch_size=8",
            "--data.holdout_frames=16", "--model.input_size=16", "--model.input_lcn_sigma=1.5",
            STAGE, "--update.learning_rate=0.01", "--mode", "sync", "--workers", "2",
            "--ps-shards", "2", "--train.stages=1", f"--steps={steps}",
            "--train.checkpoint_every=4", "--train.log_interval=2", f"--run-dir={run}",
            "--sim.num_cpus=2", "--quiet"]


def _params(run: str) -> dict:
    return read_state(storage.join(run, "model.pt"))["state"]["rbms"][0]["params"]


def test_ingest_train_resume_evaluate_in_an_s3_store(s3_store, tmp_path):
    import os

    env = {**os.environ, **s3_store}
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        make_video(videos / f"clip{i}.mp4", n_frames=48, seed=i)
    catneuron(env, tmp_path / "step1", "ingest", str(videos), "--out", f"{BUCKET}/data",
              "--input-size", "16", "--shard-rows", "16", "--workers", "0", "--quiet")
    names = storage.list_files(f"{BUCKET}/data")
    assert "_manifest.json" in names and sum(n.endswith(".parquet") for n in names) == 9

    # one run straight to step 8; another stopped at step 4, then resumed from the store
    catneuron(env, tmp_path / "step2", *train_args(f"{BUCKET}/straight", 8))
    catneuron(env, tmp_path / "step3", *train_args(f"{BUCKET}/resumed", 4))
    assert storage.read_text(f"{BUCKET}/resumed/checkpoints/stage0/LATEST") == "step00000004"
    storage.delete(f"{BUCKET}/resumed/model.pt")  # as if it had died before the stage's end
    catneuron(env, tmp_path / "step4", "train", f"--run-dir={BUCKET}/resumed", "--resume",
              "--steps=8", "--quiet")

    straight, resumed = _params(f"{BUCKET}/straight"), _params(f"{BUCKET}/resumed")
    for name in straight:  # sync mode: a resumed run equals an uninterrupted one
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=1e-6)
    for name in ("config.toml", "metrics.jsonl", "events.log", "model.pt"):
        assert storage.exists(f"{BUCKET}/resumed/{name}"), name
    events = storage.read_text(f"{BUCKET}/resumed/events.log")
    assert "resuming from s3://catneuron/e2e/resumed/checkpoints/stage0/step00000004" in events

    done = catneuron(env, tmp_path / "step5", "evaluate", f"--run={BUCKET}/resumed",
                     "--splits", "5", "--filters", "200", "--quiet")
    assert f"wrote {BUCKET}/resumed/evaluation.json" in done.stdout
    assert "no training frames" not in done.stderr  # the dataset was read from the store
    result = json.loads(storage.read_text(f"{BUCKET}/resumed/evaluation.json"))
    check_contract(result, BUILTIN, n_stages=1)
    assert result["probe"]["source"] == "builtin"
    assert result["protocol"] == {"n_splits": 5, "n_thresholds": 20, "seed": 0}
    for step in ("step1", "step2", "step3", "step4", "step5"):  # nothing written next to them
        assert not any((tmp_path / step).iterdir()), step
