"""Spread-out starting units for a competitive stage: k-means++ seeding on the unit sphere.

Random training windows are mostly background (faces fill a few per cent of the windows), so a
top stage started at K random windows may start no unit near a face. k-means++ (Arthur &
Vassilvitskii 2007) draws each next window with probability proportional to its squared
distance to the nearest window already picked; on unit-length rows that distance is
``2 - 2 cos``, so the picks cover every region of window space, rare ones included.
"""

from __future__ import annotations

import torch
from torch import Tensor

SPREAD_CANDIDATES = 16  # candidate rows per unit that the spread picks are drawn from


def spread_picks(rows: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Indices (k,) of ``k`` spread-out rows of ``rows`` (N >= k, D), by
    ``sklearn.cluster.kmeans_plusplus`` (one trial per pick) on the rows scaled to unit length;
    its seed drawn from ``generator``."""
    from sklearn.cluster import kmeans_plusplus

    if len(rows) < k:
        raise ValueError(f"{len(rows)} rows for {k} spread picks")
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    _, pick = kmeans_plusplus(unit.double().cpu().numpy(), k, random_state=seed,
                              n_local_trials=1)
    return torch.from_numpy(pick).long().to(rows.device)
