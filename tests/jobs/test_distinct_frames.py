"""Top frames as distinct sightings (jobs/report/distinct_frames.py)."""

from __future__ import annotations

import torch

from jobs.report.distinct_frames import distinct_order, pool_size, spread_out
from models.neurons.topk import RunningTopK


def test_near_copies_of_a_better_frame_go_last_in_their_order():
    sightings = [("a", 100), ("a", 101), ("b", 100), ("a", 140), ("a", 120), ("b", 129),
                 ("b", 131)]
    assert distinct_order(sightings, 30) == [0, 2, 3, 6, 1, 4, 5]
    assert distinct_order(sightings, 0) == list(range(7))  # gap 0: the plain ranking
    assert distinct_order(sightings, 1) == list(range(7))  # only the same frame is "near"


def test_a_near_copy_is_judged_against_kept_frames_only():
    """a@125 is near a@100's copy a@110 but not near a kept frame: it is kept."""
    assert distinct_order([("a", 100), ("a", 110), ("a", 125)], 20) == [0, 2, 1]


def test_spread_out_reorders_each_units_pool_and_cuts_it_to_top_k():
    meta = {i: {"source": src, "frame_index": t}
            for i, (src, t) in enumerate([("v", 0), ("v", 1), ("v", 2), ("w", 0), ("v", 50)])}
    pool = RunningTopK(2, 5)
    pool.merge(torch.tensor([[9.0, 8, 7, 6, 5], [9.0, 8, 7, 6, 5]]),
               torch.tensor([[0, 1, 2, 3, 4], [3, 4, 0, 1, 2]]))
    got = spread_out(pool, meta, 3, 10)
    assert got.ids.tolist() == [[0, 3, 4], [3, 4, 0]]
    assert got.values.tolist() == [[9.0, 6.0, 5.0], [9.0, 8.0, 7.0]]
    assert spread_out(pool, meta, 3, 0).ids.tolist() == [[0, 1, 2], [3, 4, 0]]
    assert pool_size(9, 30) == 90 and pool_size(9, 0) == 9
