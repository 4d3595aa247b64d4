"""Running top-k per unit over a stream of batches (the per-batch math of a dataset scan).

For U units, the state is the k largest activations seen so far per unit (U, k) and the ids of
the frames that gave them. Each batch's activations (N, U) are concatenated to the state and
cut back to k with ``torch.topk``; two states merge the same way, so shards scanned apart (by
different actors) merge into the top-k of their union. The top-k values are the union's
whatever the partition; where values tie exactly at the k-th place, which of the tied frames
are kept may depend on it (``torch.topk`` breaks ties in no set order).
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
        """State <- top-k of (state ++ new) along each unit's row."""
        v = torch.cat([self.values, values], 1)
        i = torch.cat([self.ids, ids.to(torch.long)], 1)
        top, where = torch.topk(v, min(self.k, v.shape[1]), dim=1, sorted=True)
        self.values, self.ids = top, i.gather(1, where)
