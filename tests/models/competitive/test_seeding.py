"""Spread-out starting units: k-means++ picks cover a rare region that random picks miss."""

from __future__ import annotations

import pytest
import torch

from models.competitive.seeding import spread_picks


def _common_and_rare(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """995 rows near one direction and 5 near an orthogonal one (a face among backgrounds);
    the rows and a mask of the rare ones."""
    g = torch.Generator().manual_seed(seed)
    rows = 0.002 * torch.randn(1000, 8, generator=g, dtype=torch.float64)
    rows[:995, 0] += 1.0
    rows[995:, 1] += 3.0  # longer rows: the picks must not depend on length
    rare = torch.zeros(1000, dtype=torch.bool)
    rare[995:] = True
    return rows, rare


@pytest.mark.parametrize("seed", range(5))
def test_two_spread_picks_take_one_row_of_each_region(seed):
    rows, rare = _common_and_rare(seed)
    pick = spread_picks(rows, 2, torch.Generator().manual_seed(seed))
    assert pick.shape == (2,) and len(set(pick.tolist())) == 2
    assert sorted(rare[pick].tolist()) == [False, True]


def test_random_picks_mostly_miss_the_rare_region():
    """The contrast that makes spread picks worth having: two random rows of the same data
    include a rare one in about 1 % of draws."""
    rows, rare = _common_and_rare(0)
    g = torch.Generator().manual_seed(0)
    hits = sum(bool(rare[torch.randperm(1000, generator=g)[:2]].any()) for _ in range(200))
    assert hits < 10


def test_too_few_rows_is_an_error():
    with pytest.raises(ValueError, match="3 rows for 4 spread picks"):
        spread_picks(torch.randn(3, 2), 4, torch.Generator())
