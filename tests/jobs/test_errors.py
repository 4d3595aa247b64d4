"""jobs.errors: every command ends a usage error with one line and status 2, Ctrl-C with 130 and
how to continue, a diverged run with one line naming the stage, step and setting (status 1); a
bug keeps its traceback."""

from __future__ import annotations

import json
from importlib import import_module

import pytest
import torch

from cluster.failures import Diverged, diverged_cause, diverged_message
from jobs.errors import UserError, command, run_main
from models.rbm.dense import BernoulliRBM
from models.rbm.optim import UpdateConfig
from models.typed_config import ConfigError

#: (module, prog, a bad argument list): argparse's errors and the commands' own checks
BAD_ARGUMENTS = [
    ("jobs.cli", "catneuron", ["no-such-command"]),
    ("jobs.train", "catneuron train", ["--workers", "two"]),
    ("jobs.train", "catneuron train", ["--resume"]),  # needs --run-dir
    ("jobs.visualize", "catneuron visualize", []),  # --run is required
    ("jobs.evaluate", "catneuron evaluate", ["--run", "r", "--part", "nope"]),
    ("jobs.evaluate", "catneuron evaluate", ["--run", "r", "--splits", "0"]),
    ("jobs.plan", "catneuron plan", ["--config", "demo", "--nodes", "many"]),
    ("jobs.ingest", "catneuron ingest", ["--out", "o"]),  # no source
    ("jobs.ingest", "catneuron ingest", ["a.mp4", "--out", "o", "stray"]),
    ("jobs.gallery", "catneuron gallery", ["a", "b"]),
    ("jobs.submit", "catneuron submit", ["bake"]),
    ("jobs.control", "catneuron jobs", ["frobnicate"]),
    ("jobs.demo", "catneuron demo", ["--fastest"]),
]


@pytest.mark.parametrize("module, prog, argv", BAD_ARGUMENTS,
                         ids=[f"{m.split('.')[1]}:{' '.join(a)}" for m, _, a in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_line_and_status_2(module, prog, argv, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a command might write lands in the checkout
    assert import_module(module).main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err


@pytest.mark.parametrize("module", ["jobs.train", "jobs.visualize", "jobs.evaluate", "jobs.plan",
                                    "jobs.ingest", "jobs.gallery", "jobs.submit", "jobs.control",
                                    "jobs.demo"])
def test_help_is_status_0_not_an_exit(module, capsys):
    assert import_module(module).main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_train_is_130_with_the_resume_command(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"

    def train_then_interrupt(self):
        run.mkdir(exist_ok=True)
        (run / "metrics.jsonl").write_text(json.dumps({"stage": 0, "step": 20}) + "\n")
        raise KeyboardInterrupt

    monkeypatch.setattr("jobs.preflight.preflight", lambda *args: None)
    monkeypatch.setattr("pipeline.pool.ensure_ray", lambda *args: None)
    monkeypatch.setattr("cluster.trainer.Trainer.train", train_then_interrupt)
    assert import_module("jobs.train").main(["--run-dir", str(run), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err == (f"catneuron train: interrupted at stage 0 step 20; continue with "
                   f"`catneuron train --run-dir {run} --resume`\n")


def test_ctrl_c_in_ingest_is_130_and_says_run_it_again(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.mp4").write_bytes(b"")
    monkeypatch.setattr("jobs.ingest.run_ingest", _interrupt)
    out = tmp_path / "data"
    assert import_module("jobs.ingest").main([str(tmp_path / "a.mp4"), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("catneuron ingest: interrupted;") and err.count("\n") == 1
    assert "run the same command again to continue" in err


@pytest.mark.parametrize("module, target, argv", [
    ("jobs.evaluate", "jobs.evaluate.evaluate", ["--run", "r"]),
    ("jobs.visualize", "jobs.visualize.check_run", ["--run", "r"]),
    ("jobs.gallery", "jobs.gallery.build.build_gallery", ["."]),
    ("jobs.plan", "cluster.plan.check_inputs", ["--config", "demo", "--nodes", "2"]),
])
def test_ctrl_c_anywhere_else_is_130_in_one_line(module, target, argv, monkeypatch, capsys,
                                                 tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "visualize").mkdir()  # "." is a run the gallery takes
    (tmp_path / "visualize" / "index.json").write_text("{}")
    (tmp_path / "r").mkdir()  # "r" has the files evaluate checks before its work
    for name in ("model.pt", "config.toml"):
        (tmp_path / "r" / name).write_bytes(b"")
    monkeypatch.setattr(target, _interrupt)
    assert import_module(module).main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(": interrupted\n"), err


def _nan_rbm_error() -> FloatingPointError:
    """The error a worker's own RBM raises when its parameters became NaN."""
    rbm = BernoulliRBM(4, 3, update=UpdateConfig(learning_rate=1e30), device="cpu",
                       generator=torch.Generator().manual_seed(0))
    rbm.params["W"].fill_(float("nan"))
    with pytest.raises(FloatingPointError) as caught:
        rbm.check_finite()
    return caught.value


def test_a_workers_divergence_names_the_config_setting():
    """The RBM says ``learning_rate``; the user sets ``update.learning_rate``."""
    wrapped = RuntimeError("task failed")
    wrapped.cause = _nan_rbm_error()  # as Ray wraps a remote task's error
    line = diverged_message(0, 12, diverged_cause(wrapped))
    assert "\n" not in line and line.startswith("stage 0 diverged at step 12: ")
    assert line.endswith("lower update.learning_rate")


def test_a_diverged_run_is_one_line_and_status_1(tmp_path, monkeypatch, capsys):
    def diverge(self):
        raise Diverged(diverged_message(1, 340, FloatingPointError(
            "shard 0: NaN: lower update.learning_rate (now 0.1, try 0.01) or update.momentum")))

    monkeypatch.setattr("jobs.preflight.preflight", lambda *args: None)
    monkeypatch.setattr("pipeline.pool.ensure_ray", lambda *args: None)
    monkeypatch.setattr("cluster.trainer.Trainer.train", diverge)
    assert import_module("jobs.train").main(["--run-dir", str(tmp_path / "r"), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        "catneuron train: error: stage 1 diverged at step 340: shard 0: NaN: lower "
        "update.learning_rate (now 0.1, try 0.01) or update.momentum\n")


def test_a_lower_layers_user_error_is_one_line(capsys):
    def body(argv):
        raise ConfigError("model.stages[0].field=80\nis larger than the input 64")

    assert run_main("catneuron x", body, []) == 2
    assert capsys.readouterr().err == (
        "catneuron x: error: model.stages[0].field=80; is larger than the input 64\n")


def test_a_bug_keeps_its_traceback():
    @command("catneuron x")
    def main(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main([])


def test_a_user_error_carries_its_status(capsys):
    @command("catneuron x")
    def main(argv=None):
        raise UserError("step 2 failed", status=1)

    assert main([]) == 1
    assert capsys.readouterr().err == "catneuron x: error: step 2 failed\n"


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """``catneuron plan ... | head -1``: the pipe closes before the table is written; the command
    stops with SIGPIPE's status and no traceback (the read end is closed at once, while the
    command is still importing, so its first write fails)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "plan", "--config", "demo",
                             "--nodes", "3", "--gflops-per-core", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err


def test_a_full_disk_is_one_line_and_status_2(capsys):
    import errno

    def body(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/demo/data/_videos/x.json")

    assert run_main("catneuron x", body, []) == 2
    err = capsys.readouterr().err
    assert err.startswith("catneuron x: error: No space left on device: /runs/demo/data/")
    assert err.count("\n") == 1


def test_output_to_a_full_device_is_one_line_not_a_traceback():
    """``catneuron --help > /dev/full``: the write fails (or the flush at exit would)."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "jobs.cli", "--help"], stdout=full,
                              stderr=subprocess.PIPE, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err == "catneuron: error: No space left on device; free some space, or write " \
        "elsewhere, and run the same command again\n"


@pytest.mark.parametrize("argv", [["ingest", "--demo", "--out", ""], ["train", "--run-dir", " "],
                                  ["evaluate", "--run", ""], ["visualize", "--run", ""],
                                  ["gallery", ""], ["demo", "--out", ""],
                                  ["plan", "--nodes", "2", "--config", ""]])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(argv, tmp_path, monkeypatch,
                                                                   capsys):
    """``--out "$OUT"`` with OUT unset gave ``--out ''``: ingest and the demo wrote their
    dataset and run into the current folder."""
    from jobs.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "an empty path" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
