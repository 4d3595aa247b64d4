"""The goal check (benchmarks/face_goal.py) on hand-made records: each criterion compared with
its threshold, nothing else."""

from __future__ import annotations

import copy

from tests.benchmarks import load

CONFIG = '[model]\n[[model.stages]]\nkind = "tied"\nlearner = "kmeans"\n' \
         '[[model.stages]]\nkind = "competitive"\nlearner = "rbm"\n'


def _score(ba: float) -> dict:
    return {"heldout_balanced_accuracy": ba}


def _record() -> dict:
    """A seed that meets every criterion, each by a little."""
    bins = {"small": _score(0.83), "large": _score(0.91)}
    return {"seed": 0, "config_text": CONFIG, "train_wall_s": 70.0,
            "protocol": {"choose_on": "tune"},
            "best_neuron": {"layer": "pooled", "index": 7, "polarity": 1,
                            "heldout_balanced_accuracy": 0.87,
                            "heldout_balanced_accuracy_std": 0.03, "heldout_auc": 0.93,
                            "by_size": bins, "by_quadrant": {"top_left": _score(0.85)},
                            "corpus_top100_face_share": 0.95},
            "baselines": {"random_weights": _score(0.72), "exemplar_filters": _score(0.70),
                          "spread_exemplar_filters": _score(0.75), "best_pixel": _score(0.5),
                          "image_statistics": _score(0.55), "linear_filters": _score(0.6),
                          "stage0": _score(0.67)}}


SPLITS = {"best_neuron": {"stability": {"share": {"pooled/7": 0.55, "pooled/9": 0.45}}}}


def test_a_seed_meeting_every_criterion_is_met_and_its_margins_are_read():
    got = load("face_goal").check(_record(), SPLITS)
    assert got["met"] and not got["criteria"]["stretch"]
    assert got["margins_learned"] == {"random_weights": 0.15, "exemplar_filters": 0.17}
    assert got["margins_trivial"]["stage0"] == 0.2 and got["spread_exemplar_margin"] == 0.12
    assert got["worst_bin_gap"] == 0.04 and got["chosen_share_random_splits"] == 0.55


def test_each_criterion_alone_can_fail_the_seed():
    check = load("face_goal").check
    changes = {
        "balanced_accuracy_and_auc": lambda r: r["best_neuron"].update(heldout_auc=0.91),
        "above_learned_baselines": lambda r: r["baselines"].update(
            exemplar_filters=_score(0.73)),
        "above_trivial_baselines": lambda r: r["baselines"].update(stage0=_score(0.68)),
        "bins_and_quadrants": lambda r: r["best_neuron"]["by_quadrant"].update(
            top_right=_score(0.79)),
        "corpus_faces": lambda r: r["best_neuron"].update(corpus_top100_face_share=0.89),
        "polarity_plus_one": lambda r: r["best_neuron"].update(polarity=-1),
        "rbm_top_stage": lambda r: r.update(config_text=CONFIG.replace('"rbm"', '"kmeans"')),
        "trained_in_10_minutes": lambda r: r.update(train_wall_s=601.0),
    }
    for name, change in changes.items():
        rec = copy.deepcopy(_record())
        change(rec)
        got = check(rec, SPLITS)
        assert not got["met"] and got["criteria"][name] is False, name
        assert [k for k, v in got["criteria"].items() if v is False and k != "stretch"] == [name]
    other_unit = {"best_neuron": {"stability": {"share": {"pooled/9": 1.0}}}}
    assert check(_record(), other_unit)["criteria"]["chosen_in_half_the_splits"] is False
    unknown = check(_record(), None)  # without the random splits the share is not known
    assert unknown["criteria"]["chosen_in_half_the_splits"] is None and not unknown["met"]

