"""``catneuron train`` end to end through its ``main``: shortcuts, overrides, --resume."""

from __future__ import annotations

import json

import torch

from jobs.train import main
from tests.cluster.data import make_dataset


def test_train_main_runs_and_resumes(ray_cluster, tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=64, size=16,
                        shard_rows=32)
    run = tmp_path / "run"
    args = [f'--data.path="{data}"', "--data.batch_size=16", "--model.input_size=16",
            "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]", "--train.stages=1",
            "--workers", "2", "--ps-shards", "2", "--mode", "sync", "--steps", "6",
            "--train.checkpoint_every=3", "--run-dir", str(run), "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stages"][0]["updates_applied"] == [6, 6]
    assert (run / "config.toml").is_file() and (run / "model.pt").is_file()
    # the same run folder without --resume is refused before anything is written
    stamp = (run / "config.toml").stat().st_mtime_ns
    assert main(args) == 2
    assert (run / "config.toml").stat().st_mtime_ns == stamp
    assert "--resume" in capsys.readouterr().err
    # --resume with only the run folder: the saved config is used, finished stages are kept
    before = torch.load(run / "model.pt", weights_only=True)["state"]["rbms"][0]["params"]["W"]
    assert main(["--run-dir", str(run), "--resume", "--quiet"]) == 0
    after = torch.load(run / "model.pt", weights_only=True)["state"]["rbms"][0]["params"]["W"]
    assert torch.equal(before, after)
    assert "already trained" in (run / "events.log").read_text()
    # a finished run resumed with more steps trains nothing, says so, and keeps the config.toml
    # its model was trained with (it was rewritten with steps = 60)
    saved = (run / "config.toml").read_text()
    board = sorted(p.name for p in (run / "tensorboard").iterdir())
    capsys.readouterr()
    assert main(["--run-dir", str(run), "--resume", "--quiet", "--train.steps=60"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == []
    assert (run / "config.toml").read_text() == saved
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == board  # no empty file
    assert "nothing to train" in (run / "events.log").read_text()
