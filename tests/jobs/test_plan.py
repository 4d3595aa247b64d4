"""``catneuron plan``: the command line and its JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.plan import main

ROOT = Path(__file__).resolve().parents[2]


def test_plan_cli_json(capsys):
    assert main(["--config", str(ROOT / "configs/le2012.toml"), "--nodes", "1000",
                 "--gflops-per-core", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nodes"] == 1000 and len(out["stages"]) == 3
    assert main(["--config", str(ROOT / "configs/le2012.toml"), "--nodes", "1000",
                 "--gflops-per-core", "10", "--model.stages[0].field=300"]) == 2
    assert "stages[0].field=300" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--bandwidth-gbps", "0"), ("--gflops-per-core", "-1"),
                                         ("--nodes", "0"), ("--cores-per-node", "0")])
def test_impossible_sizes_are_one_line_exit_2(capsys, flag, value):
    args = ["--config", str(ROOT / "configs/demo.toml"), "--nodes", "4",
            "--gflops-per-core", "10", flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"catneuron plan: error: {flag}=") and err.count("\n") == 1



def test_plan_cli_measures_steps_on_the_data_and_counts_shard_calls(tmp_path, capsys):
    from tests.cluster.data import make_dataset

    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    small = [f'--data.path="{data}"', "--data.batch_size=16", "--data.holdout_frames=0",
             "--model.input_size=16", "--train.stages=1",
             '--model.stages=[{kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, '
             'pool_stride=2, pool_kind="rms", sign_split=true, rows_per_frame=8}]']
    assert main(["--config", str(ROOT / "configs/demo.toml"), "--nodes", "3",
                 "--cores-per-node", "1", "--gflops-per-core", "10", "--measure-steps",
                 "--call-ms", "2", "--fanout-ms", "0.5", *small]) == 0
    out = capsys.readouterr().out
    assert "2 ms per shard call" in out and "stage 0: step measured on one core" in out
    assert "0.5 ms a sync step per worker beyond the first (0.5 ms here)" in out
    missing = [a if not a.startswith("--data.path") else '--data.path="/nonexistent/d"'
               for a in small]
    assert main(["--config", str(ROOT / "configs/demo.toml"), "--nodes", "3",
                 "--gflops-per-core", "10", "--measure-steps", *missing]) == 2
    err = capsys.readouterr().err
    assert "no such dataset" in err and err.count("\n") == 1
    assert main(["--config", str(ROOT / "configs/demo.toml"), "--nodes", "3",
                 "--gflops-per-core", "10", "--call-ms", "-1"]) == 2
    assert "--call-ms: must be a number >= 0" in capsys.readouterr().err
    assert main(["--config", str(ROOT / "configs/demo.toml"), "--nodes", "3",
                 "--gflops-per-core", "10", "--fanout-ms", "nan"]) == 2
    assert "--fanout-ms: must be a number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--bandwidth-gbps", "1e-320"], ["--gflops-per-core", "1e-320"],
                                   ["--call-ms", "1e308", "--json"], ["--call-ms", "1e308"]])
def test_figures_past_float_range_are_one_line_not_a_traceback_or_infinity(capsys, flags):
    """Tiny positive rates divided by zero; huge times printed Infinity (not JSON) or a
    300-digit number of days."""
    args = ["--config", "demo", "--nodes", "1", "--gflops-per-core", "1", *flags]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "comes out as inf: a rate too small or a time too large" in err
