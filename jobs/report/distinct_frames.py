"""Top frames that are distinct sightings, not consecutive frames of one shot.

A unit's highest responses in a video dataset are often a run of neighbouring frames of one shot:
near copies that show one sighting many times and hide what else drives the unit. ``catneuron
visualize`` therefore ranks a pool of ``CANDIDATES x top_k`` frames per unit, best first, and
keeps a frame in front unless it lies within ``gap`` frames of a better frame of the same video
that was itself kept in front:

    order = [the frames kept in front, best first] + [the rest, best first]

and keeps the first ``top_k``. The result is a reordering of the pool, so every unit still
shows ``top_k`` frames (near copies fill in when the pool holds fewer distinct ones), and
``gap = 0`` gives the plain top-k. Frames are compared by their shard metadata (``source``,
``frame_index``: the index in the decoded video, before ``--every`` sampling).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command-line parser reads the constants without importing torch
    from torch import Tensor

    from models.neurons.topk import RunningTopK

CANDIDATES = 10  # the pool is this many times --top-k
DEFAULT_GAP = 30  # frames: about a second of video at 25-30 fps


def pool_size(top_k: int, gap: int) -> int:
    """Frames per unit to rank before picking ``top_k`` at least ``gap`` apart."""
    return top_k * CANDIDATES if gap > 0 else top_k


def distinct_order(sightings: list[tuple[str, int]], gap: int) -> list[int]:
    """Positions of ``sightings`` ((source, frame_index), best first) in the order above."""
    kept: dict[str, list[int]] = {}
    first, rest = [], []
    for j, (source, index) in enumerate(sightings):
        near = gap > 0 and any(abs(index - t) < gap for t in kept.get(source, ()))
        if near:
            rest.append(j)
        else:
            first.append(j)
            kept.setdefault(source, []).append(index)
    return first + rest


@dataclass(frozen=True)
class Picked:
    """The frames shown per unit: ``values``, ``ids`` (U, top_k), in :func:`distinct_order`
    (not sorted by value: a near copy comes after every distinct frame)."""

    values: Tensor
    ids: Tensor


def spread_out(top: RunningTopK, records: Mapping[int, dict], top_k: int, gap: int) -> Picked:
    """``top``'s pool (U, m) reordered per unit by :func:`distinct_order` and cut to
    ``top_k``; ``records``: frame id -> {"source", "frame_index", ...}
    (``cluster.topk.fetch_records``)."""
    import torch

    values, ids = [], []
    for v, i in zip(top.values, top.ids, strict=True):
        sightings = [(str(records[f]["source"]), int(records[f]["frame_index"]))
                     for f in i.tolist()]
        order = torch.as_tensor(distinct_order(sightings, gap)[:top_k], dtype=torch.long)
        values.append(v[order])
        ids.append(i[order])
    return Picked(torch.stack(values), torch.stack(ids))
