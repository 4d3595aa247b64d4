"""The appearance ranking (benchmarks/face_appearances.py), the unit groups
(benchmarks/unit_groups.py) and the unit pairs (benchmarks/face_unit_pairs.py), against direct
computations."""

from __future__ import annotations

import numpy as np
import torch

from tests.benchmarks import load


def test_appearances_are_ranked_by_their_strongest_frame():
    rank = load("face_appearances").appearance_ranking
    # appearance "f1" (face): frames 0.1, 0.9; "n1" (non-face): 0.8; "f2" (face): 0.2, 0.3;
    # "b1" (bare): 0.5. By strongest frame: f1 0.9, n1 0.8, b1 0.5, f2 0.3.
    got = rank(np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.5]),
               ["face", "face", "non_face", "face", "face", "none"],
               ["f1", "f1", "n1", "f2", "f2", "b1"])
    assert got["appearances"] == 4 and got["face_appearances"] == 2
    assert got["chance_share"] == 0.5
    assert got["face_share_top_k"] == {"2": 0.5}  # k = 10 and 25 exceed the 4 appearances
    # AUC by hand: face scores {0.9, 0.3} against {0.8, 0.5}: pairs won 2 of 4
    assert got["auc"] == 0.5


def test_a_group_is_its_unit_and_the_units_whose_top_sets_overlap_it_enough():
    groups = load("unit_groups").groups
    sets = [{1, 2, 3, 4}, {3, 4, 5, 6}, {7, 8}, {1, 2, 3, 5}]
    # Jaccard: (0,1) 2/6, (0,3) 3/5, (1,3) 2/6, unit 2 shares nothing
    assert groups(sets, 0.5) == [[0, 3], [1], [2], [0, 3]]
    assert groups(sets, 0.3) == [[0, 1, 3], [0, 1, 3], [2], [0, 1, 3]]
    assert groups(sets, 1.01) == [[0], [1], [2], [3]]


def test_a_pair_of_units_is_compared_by_responses_weights_and_top_images():
    pair = load("face_unit_pairs").pair_figures
    # unit 1 = 2 x unit 0 + 1 (correlation 1), unit 2 = -unit 0 (correlation -1)
    r0 = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    r = torch.stack([r0, 2 * r0 + 1, -r0], 1)
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    got = pair(r, w, 0, 1, top=3)
    assert got == {"units": [0, 1], "response_corr": 1.0, "weight_cos": round(2 ** -0.5, 3),
                   "top3_shared": 3}
    got = pair(r, None, 0, 2, top=3)  # the top 3 of unit 0 are images 3-5, of unit 2 images 0-2
    assert got == {"units": [0, 2], "response_corr": -1.0, "weight_cos": None, "top3_shared": 0}
