"""benchmarks/evaluate_cache.py: evaluate with no cache, an empty one and a full one writes the
same evaluation.json, and the run it copies is left as it was."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks import load


def test_the_three_cases_score_the_same_and_leave_the_run_alone(tmp_path):
    from tests.jobs.test_evaluate import KINDS, _run_folder

    run = _run_folder(tmp_path, KINDS)
    before = sorted(p.name for p in run.iterdir())
    out = tmp_path / "evaluate_cache.json"
    assert load("evaluate_cache").main(["--run", str(run), "--repeat", "1",
                                        "--baseline-draws", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["seconds"]) == {"no_cache", "cache_empty", "cache_full"}
    assert all(len(v) == 1 for v in result["seconds"].values())
    assert result["evaluation_json_identical"] is True and result["cache_file_bytes"] > 0
    assert result["baseline_draws"] == 2
    assert sorted(p.name for p in run.iterdir()) == before  # no evaluation.json written there


def test_a_run_without_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        load("evaluate_cache").main(["--run", str(tmp_path)])
