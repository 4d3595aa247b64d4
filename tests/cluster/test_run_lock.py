"""One training at a time in a run folder (:mod:`cluster.run_lock`), and a fresh run refused
where a run's files already are (:func:`cluster.runlog.refuse_existing_run`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cluster.run_lock import LOCK, RunLock
from cluster.runlog import refuse_existing_run


def test_a_second_lock_is_refused_naming_the_holder_until_the_first_is_released(tmp_path):
    first = RunLock(str(tmp_path))
    with pytest.raises(FileExistsError, match=f"pid {os.getpid()}"):
        RunLock(str(tmp_path))
    first.release()
    RunLock(str(tmp_path)).release()


def test_a_killed_holder_leaves_the_folder_free(tmp_path):
    code = ("import os, sys; from cluster.run_lock import RunLock; RunLock(sys.argv[1]); "
            "print('held', flush=True); os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "held" and (tmp_path / LOCK).exists()
    RunLock(str(tmp_path)).release()


def test_a_training_is_refused_while_another_holds_the_folder(tmp_path, monkeypatch):
    from cluster.trainer import Trainer
    from jobs.config import dumps, load

    monkeypatch.setattr("cluster.trainer.check_data", lambda cfg: None)
    monkeypatch.setattr("cluster.trainer.init_ray", lambda *a, **k: None)
    config = load("demo", [f'train.run_dir="{tmp_path}"'])
    held = RunLock(str(tmp_path))
    with pytest.raises(FileExistsError, match="being trained by another catneuron train"):
        Trainer(config, dumps(config), resume=True, echo=None).train()
    held.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]  # nothing written


@pytest.mark.parametrize("name", ["config.toml", "metrics.jsonl", "checkpoints"])
def test_a_fresh_run_is_refused_where_a_runs_files_are(tmp_path, name):
    (tmp_path / name).mkdir() if name == "checkpoints" else (tmp_path / name).write_text("x")
    with pytest.raises(FileExistsError, match=f"already holds {name}: pass --resume"):
        refuse_existing_run(str(tmp_path), resume=False)
    refuse_existing_run(str(tmp_path), resume=True)
    (tmp_path / "notes.txt").write_text("a user's file")
    refuse_existing_run(str(tmp_path / "new"), resume=False)
