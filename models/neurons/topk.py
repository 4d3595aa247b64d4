"""Running top-k per unit over a stream of batches (the per-batch math of a dataset scan).

For U units, the state is the k largest activations seen so far per unit (U, k) and the ids of
the frames that gave them. Each batch's activations (N, U) are concatenated to the state and
cut back to k with ``torch.topk``; two states merge the same way, so shards scanned apart (by
different actors) merge into the top-k of their union. Equal values are ordered by frame id,
smaller first (``torch.topk`` breaks ties in no set order), so the state is the first k frames
of the union in the order (value descending, id ascending), whatever the partition: the same
frames whichever actors scanned which shards, even where frames tie (a still shot repeats its
frame exactly).
"""

from __future__ import annotations

import torch
from torch import Tensor


class RunningTopK:
    """Top-``k`` activations and frame ids per unit.

    Attributes
    ----------
    values : (U, m) float, each row sorted descending; ``m = min(k, frames seen)``.
    ids : (U, m) int64 frame ids matching ``values``.
    """

    def __init__(self, n_units: int, k: int, dtype: torch.dtype = torch.float32) -> None:
        if n_units < 1 or k < 1:
            raise ValueError(f"n_units={n_units} and k={k} must be >= 1")
        self.k = k
        self.values = torch.empty(n_units, 0, dtype=dtype)
        self.ids = torch.empty(n_units, 0, dtype=torch.long)

    def update(self, activations: Tensor, ids: Tensor) -> None:
        """Add a batch: ``activations`` (N, U) of frames ``ids`` (N,)."""
        acts = activations.detach().to(device="cpu", dtype=self.values.dtype).T  # (U, N)
        frame_ids = torch.as_tensor(ids, dtype=torch.long).expand(acts.shape[0], -1)
        self._keep(acts, frame_ids)

    def merge(self, values: Tensor, ids: Tensor) -> None:
        """Add another state's ``values`` and ``ids`` (U, m')."""
        self._keep(torch.as_tensor(values, dtype=self.values.dtype), torch.as_tensor(ids))

    def _keep(self, values: Tensor, ids: Tensor) -> None:
        """State <- top-k of (state ++ new) along each unit's row, ties by id."""
        v = torch.cat([self.values, values], 1)
        i = torch.cat([self.ids, ids.to(torch.long)], 1)
        k = min(self.k, v.shape[1])
        # one place more than kept: whether a tie crosses the cut
        top, where = torch.topk(v, min(k + 1, v.shape[1]), dim=1, sorted=True)
        tied = _rows_with_ties(top, k)
        top, kept = top[:, :k], i.gather(1, where[:, :k])
        if tied.numel():
            top[tied], kept[tied] = _by_value_then_id(v[tied], i[tied], k)
        self.values, self.ids = top, kept


def _rows_with_ties(top: Tensor, k: int) -> Tensor:
    """Indices of the rows of ``top`` (each sorted descending, ``k`` kept and at most one more)
    where ``torch.topk``'s tie order could show: two equal values among them."""
    if top.shape[1] < 2 or k == 0:
        return torch.empty(0, dtype=torch.long)
    return torch.nonzero((top[:, 1:] == top[:, :-1]).any(1)).flatten()


def _by_value_then_id(v: Tensor, i: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first ``k`` of each row of values ``v`` and ids ``i`` (R, n) in the order value
    descending, id ascending: a stable sort by value over the rows sorted by id."""
    by_id = torch.argsort(i, dim=1, stable=True)
    v, i = v.gather(1, by_id), i.gather(1, by_id)
    order = torch.argsort(v, dim=1, descending=True, stable=True)[:, :k]
    return v.gather(1, order), i.gather(1, order)
