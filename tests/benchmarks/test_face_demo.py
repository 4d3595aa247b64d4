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
