"""The model comparison of benchmarks/isa_dependence.py, against direct computations."""

from __future__ import annotations

import torch

from tests.benchmarks import load


def test_two_models_are_compared_tensor_by_tensor(tmp_path):
    bench = load("isa_dependence")
    a = {"state": {"rbms": [{"W": torch.ones(2, 3), "b": torch.zeros(3)}], "step": 4}}
    b = {"state": {"rbms": [{"W": torch.ones(2, 3), "b": torch.tensor([0.0, -0.5, 1e-7])}],
                   "step": 4}}
    for name, state in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        torch.save(state, tmp_path / name / "model.pt")
    ta, tb = bench.tensors(tmp_path / "a"), bench.tensors(tmp_path / "b")
    assert sorted(ta) == ["/state/rbms/0/W", "/state/rbms/0/b"]
    assert bench.compare(ta, ta) == {"tensors": 2, "differ": 0, "max_abs_diff": 0.0,
                                     "differing": []}
    assert bench.compare(ta, tb) == {"tensors": 2, "differ": 1, "max_abs_diff": 0.5,
                                     "differing": ["/state/rbms/0/b"]}
    del tb["/state/rbms/0/W"]  # a tensor the other model lacks differs too
    assert bench.compare(ta, tb)["differ"] == 2


def test_the_headline_figures_are_read_from_an_evaluation():
    figures = load("isa_dependence").headline_figures
    evaluation = {
        "best_neuron": {"layer": "pooled", "index": 134, "heldout_balanced_accuracy": 0.85814,
                        "heldout_balanced_accuracy_std": 0.0312, "heldout_auc": 0.93517,
                        "stability": {"top_share": 0.9}},
        "baselines": {"random_weights": {"heldout_balanced_accuracy": 0.7071},
                      "stage0": {"heldout_balanced_accuracy": 0.5963}}}
    assert figures(evaluation) == {
        "unit": "pooled #134", "heldout_balanced_accuracy": 0.858,
        "heldout_balanced_accuracy_std": 0.031, "heldout_auc": 0.935, "top_share": 0.9,
        "baselines": {"random_weights": 0.707, "stage0": 0.596}}

