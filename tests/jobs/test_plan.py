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

