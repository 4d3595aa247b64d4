"""benchmarks/stimulus.py: both objectives searched on one run's competitive units end at the
same stimuli and activations (float rounding apart)."""

from __future__ import annotations

import json

from tests.benchmarks import load


def test_both_objectives_end_at_the_same_stimuli(tmp_path):
    from tests.jobs.test_evaluate import KINDS, _run_folder

    run = _run_folder(tmp_path, KINDS)
    out = tmp_path / "stimulus.json"
    assert load("stimulus").main(["--run", str(run), "--units", "3", "--steps", "4",
                                  "--repeat", "1", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["units"] == [0, 1, 2]  # no evaluation.json: the first units
    assert set(result["seconds"]) == {"whole_up_pass", "best_window"}
    assert result["max_abs_activation_difference"] < 1e-4
    assert result["max_abs_stimulus_difference"] < 1e-3
