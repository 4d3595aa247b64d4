"""``catneuron train``: what --resume continues, what it may change, flag precedence, and the
checks that run before Ray starts (each a one-line error, exit 2, nothing written)."""

from __future__ import annotations

import re

import pytest

import jobs.train as train_job
from jobs.config import JobConfig, dumps, load
from jobs.resume import load_run_config
from pipeline.shards import empty_manifest, write_manifest
from tests.cluster.data import make_dataset

SMALL = ["--data.batch_size=16", "--model.input_size=16",
         "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]", "--train.stages=1"]


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every case here must end before Ray starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("pipeline.pool.ensure_ray", refuse)


def _run_folder(tmp_path, data, **train) -> tuple:
    """A run folder as a started run leaves it: its resolved config.toml (non-default lr)."""
    run = tmp_path / "run"
    run.mkdir()
    extra = [f"--train.{k}={v}" for k, v in train.items()]
    config = load(None, [f'--data.path="{data}"', *SMALL, "--update.learning_rate=0.003",
                         "--train.n_workers=2", f'--train.run_dir="{run}"', *extra])
    (run / "config.toml").write_text(dumps(config))
    return run, config


def test_resume_uses_the_runs_own_config_with_safe_overrides(tmp_path):
    run, saved = _run_folder(tmp_path, tmp_path / "data")
    resumed = load_run_config(run, ["--train.steps=900", "--sim.num_cpus=1"])
    assert resumed.update.learning_rate == 0.003 != JobConfig().update.learning_rate
    assert resumed.model == saved.model and resumed.train.steps == 900


def test_resume_needs_a_run_dir_and_refuses_config(tmp_path, capsys):
    assert train_job.main(["--resume"]) == 2
    assert "--resume needs --run-dir" in capsys.readouterr().err
    run, _ = _run_folder(tmp_path, tmp_path / "data")
    assert train_job.main(["--resume", "--run-dir", str(run), "--config", "x.toml"]) == 2
    assert "drop --config" in capsys.readouterr().err


def test_resume_of_a_folder_with_no_run_is_an_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert train_job.main(["--resume", "--run-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "holds no run to continue" in err and err.count("\n") == 1
    assert not missing.exists()


def test_resume_refuses_an_unsafe_change_and_writes_nothing(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=32, size=16,
                        shard_rows=32)
    run, _ = _run_folder(tmp_path, data)
    before = (run / "config.toml").read_text()
    for args in (["--workers", "3"], ["--train.n_ps_shards=1"], ["--update.learning_rate=0.1"]):
        assert train_job.main(["--resume", "--run-dir", str(run), *args]) == 2
        err = capsys.readouterr().err
        assert "--resume cannot change" in err and err.count("\n") == 1
    assert (run / "config.toml").read_text() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.toml"]


@pytest.mark.parametrize("override", ["--train.seed=5", "--train.read_cache_mb=0",
                                      "--data.batch_size=8", "--data.holdout_frames=3"])
def test_resume_refuses_each_field_that_changes_the_result(tmp_path, override):
    """Fields a reader might think harmless, each of which changes what a resumed run computes,
    so that it no longer equals the uninterrupted one: the seed (every random stream), the
    read cache (cached frames are whitened by one convolution, uncached windows one at a time:
    other float rounding), the batch size and the held-out frames (which frames each step
    reads). Guards :data:`jobs.resume.SAFE_ON_RESUME` against growing any of them: the test
    above tries the workers, shards and learning rate only, so adding these passed."""
    from jobs.config import ConfigError

    run, _ = _run_folder(tmp_path, tmp_path / "data")
    field = override[2:].split("=")[0]
    with pytest.raises(ConfigError, match=rf"--resume cannot change {re.escape(field)} "):
        load_run_config(run, [override])


def test_a_refused_resume_names_each_changed_field_not_the_whole_config(tmp_path, capsys):
    run, _ = _run_folder(tmp_path, tmp_path / "data")
    assert train_job.main(["--resume", "--run-dir", str(run), "--model.stages[0].n_maps=8",
                           "--update.learning_rate=0.1", "--train.steps=50"]) == 2
    err = capsys.readouterr().err
    assert ("--resume cannot change model.stages[0].n_maps (4 -> 8), update.learning_rate "
            "(0.003 -> 0.1): the run's checkpoints depend on them") in err
    assert err.count("\n") == 1 and len(err) < 300 and "train.steps" not in err


def _meta(config_text: str) -> dict:
    """A checkpoint's meta.pt fields (:data:`cluster.checkpoint.META_FIELDS`)."""
    return {"stage": 0, "step": 10, "config": config_text, "layout": {}, "positions": [[0, 1]],
            "seqs": [], "worker_steps": [], "local_states": []}


@pytest.mark.parametrize("written", ["model.pt", "checkpoint"])
def test_resume_refuses_a_config_toml_edited_since_the_run_wrote_its_state(tmp_path, capsys,
                                                                          written):
    from cluster.state_io import write_state

    run, config = _run_folder(tmp_path, tmp_path / "data")
    if written == "model.pt":
        write_state(run / "model.pt", {"stages_trained": 0, "job_config": dumps(config)})
    else:
        step = run / "checkpoints/stage0/step00000010"
        step.mkdir(parents=True)
        write_state(step / "meta.pt", _meta(dumps(config)))
        (run / "checkpoints/stage0/LATEST").write_text("step00000010")
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("learning_rate = 0.003", "learning_rate = 0.5")
                                     .replace('mode = "async"', 'mode = "sync"'))
    assert train_job.main(["--resume", "--run-dir", str(run), "--train.steps=50"]) == 2
    err = capsys.readouterr().err
    assert "config.toml was edited since its checkpoints were written" in err
    assert "update.learning_rate (0.003 -> 0.5)" in err and "train.mode ('async' -> 'sync')" in err
    assert err.count("\n") == 1
    (run / "config.toml").write_text(re.sub(r"^steps = .*$", "steps = 7", text, flags=re.M))
    assert load_run_config(run, []).train.steps == 7  # a safe field may be edited


def test_an_invalid_run_config_names_its_file(tmp_path, capsys):
    run, _ = _run_folder(tmp_path, tmp_path / "data")
    (run / "config.toml").write_text((run / "config.toml").read_text()
                                     .replace("[sim]\n", "[sim]\nbogus = 1\n"))
    assert train_job.main(["--resume", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.toml'}: " in err and "bogus" in err and err.count("\n") == 1


def test_a_shortcut_and_its_field_must_agree(tmp_path, capsys):
    assert train_job.main(["--workers", "3", "--train.n_workers=2"]) == 2
    assert "--workers 3 and --train.n_workers=2 disagree" in capsys.readouterr().err
    config, _ = train_job.resolve(["--workers", "3", "--train.n_workers=3"])
    assert config.train.n_workers == 3


def _args(data, run, *extra):
    return [f'--data.path="{data}"', *SMALL, "--workers", "2", "--run-dir", str(run), *extra]


def test_cuda_without_a_gpu_is_one_line_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=32, size=16,
                        shard_rows=32)
    assert train_job.main(_args(data, tmp_path / "run", "--train.device=cuda")) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_dataset_with_no_frames_is_one_line_before_ray(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    write_manifest(tmp_path / "data", empty_manifest({}))
    assert train_job.main(_args(tmp_path / "data", tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "has no frames" in err and "n_workers=0" not in err and err.count("\n") == 1


def test_fewer_frames_per_worker_than_a_batch_is_one_line_before_ray(tmp_path, capsys):
    # 2 workers x 1 training shard of 10 frames (+ a held-out shard), batch 16
    data = make_dataset(tmp_path / "data", n_videos=3, frames_per_video=10, size=16,
                        shard_rows=10)
    assert train_job.main(_args(data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "gets 10 frames, fewer than data.batch_size=16" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("latest", ["../../../elsewhere", "model.pt"])
def test_a_tampered_checkpoint_pointer_is_one_line(tmp_path, capsys, monkeypatch, latest):
    """``LATEST`` naming something else than a step folder of its stage: exit 2 with one line,
    before any actor starts (Ray's start-up is a no-op here: nothing may need it)."""
    monkeypatch.setattr("pipeline.pool.ensure_ray", lambda *args, **kwargs: None)
    monkeypatch.setattr("cluster.trainer.init_ray", lambda *args, **kwargs: None)
    data = make_dataset(tmp_path / "data", n_videos=4, frames_per_video=32, size=16,
                        shard_rows=32)
    run, _ = _run_folder(tmp_path, data)
    (run / "checkpoints/stage0").mkdir(parents=True)
    (run / "checkpoints/stage0/LATEST").write_text(latest)
    assert train_job.main(["--resume", "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint folder of this stage" in err and err.count("\n") == 1


@pytest.mark.parametrize("override, message", [
    ("--train.run_dir=", "run_dir is empty"), ("--data.path=", "path is empty")])
def test_an_empty_run_folder_or_dataset_is_one_line_and_writes_nothing(tmp_path, capsys,
                                                                        monkeypatch, override,
                                                                        message):
    """An empty string would be the current folder: refused before anything is written."""
    monkeypatch.chdir(tmp_path)
    assert train_job.main(["--config", "demo", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_fresh_run_into_a_folder_with_a_users_config_toml_is_refused_untouched(tmp_path,
                                                                                  capsys):
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=32, size=16,
                        shard_rows=32)
    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.toml").write_text("notes")
    (run / "metrics.jsonl").write_text("x\n")
    assert train_job.main(_args(data, run)) == 2
    err = capsys.readouterr().err
    assert "already holds config.toml, metrics.jsonl: pass --resume" in err
    assert err.count("\n") == 1
    assert (run / "config.toml").read_text() == "notes"
    assert (run / "metrics.jsonl").read_text() == "x\n"
