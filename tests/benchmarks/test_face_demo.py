"""benchmarks/face_demo.py's table cells: a baseline drawn several times shows its draws."""

from __future__ import annotations

from tests.benchmarks import load


def test_a_drawn_baseline_cell_gives_the_mean_then_the_draws_range_and_spread():
    from models.neurons.draws import drawn_score

    draws = [{"index": i, "polarity": 1, "accuracy": ba, "balanced_accuracy": ba, "auc": 0.8,
              "heldout_accuracy": ba, "heldout_balanced_accuracy": ba,
              "heldout_balanced_accuracy_std": 0.03, "heldout_auc": 0.8}
             for i, ba in enumerate((0.7, 0.8, 0.75))]
    cell = load("face_demo")._cell
    assert cell(draws[0]) == "0.700 ± 0.030 / 0.800"
    assert cell(drawn_score(draws)) == "0.750 ± 0.030 / 0.800 (draws 0.700–0.800, spread 0.050)"


def test_reuse_takes_an_evaluation_only_with_the_draws_evaluate_makes_now(tmp_path, monkeypatch):
    """``--reuse`` keeps a run's evaluation.json only when it was scored the same way, which
    includes the number of exemplar draws: a file from before they were drawn five times
    (no ``draws``) is scored again."""
    import json
    import os
    import subprocess

    from models.neurons.draws import drawn_score

    face_demo = load("face_demo")
    one = {"index": 1, "polarity": 1, **{k: 0.7 for k in (
        "accuracy", "balanced_accuracy", "auc", "heldout_accuracy", "heldout_balanced_accuracy",
        "heldout_balanced_accuracy_std", "heldout_auc")}}
    ev = {"protocol": {"seed": 0}, "probe": {"part": "report"}, "verdict": {},
          "best_neuron": one, "reference": {}, "linear_readout": {},
          "baselines": {"exemplar_filters": drawn_score([one] * 5)}}
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "evaluation.json").write_text(json.dumps(ev))
    os.utime(tmp_path / "model.pt", (0, 0))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: calls.append(a))
    face_demo.record(tmp_path, 0, [], {}, reuse=True)
    assert calls == []  # five draws: reused
    ev["baselines"]["exemplar_filters"] = one  # an evaluation from before: one draw
    (tmp_path / "evaluation.json").write_text(json.dumps(ev))
    face_demo.record(tmp_path, 0, [], {}, reuse=True)
    assert len(calls) == 1 and "jobs.evaluate" in calls[0][0]
