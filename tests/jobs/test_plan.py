"""``catneuron plan``: the command line and its JSON output."""

from __future__ import annotations

import json
from pathlib import Path

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
