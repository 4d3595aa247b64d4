"""benchmarks/face_unit_overlap.py: cosines of chosen units against a direct computation."""

from __future__ import annotations

import torch

from tests.benchmarks import load


def test_overlap_gives_cosines_and_each_units_nearest_other_unit():
    units = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, -1.0, 0.0]])
    out = load("face_unit_overlap").overlap(units, [0, 2])
    assert out["pairwise_cosine"] == [[1.0, 0.0], [0.0, 1.0]]
    assert out["nearest_unit"] == [1, 0]  # unit 2 is orthogonal to all: the first maximum
    assert out["nearest_cosine"] == [round(2 ** -0.5, 4), 0.0]
    # nearest cosines of units 0..3: 0.7071, 0.7071, 0, 0 -> median (torch: the lower middle) 0
    assert out["median_nearest_cosine_all_units"] == 0.0
