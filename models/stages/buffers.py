"""What stages share beside their learners: the fitted, untrained tensors they keep (a
whitening), and the plain encoding of the kinds that precompute nothing per frame."""

from __future__ import annotations

import torch
from torch import Tensor


def loaded_buffers(current: dict[str, Tensor], saved: dict[str, Tensor]) -> dict[str, Tensor]:
    """``saved`` moved to ``current``'s device and dtype, name by name; ValueError naming the
    tensor when a shape differs (a state saved from another geometry)."""
    out = dict(current)
    for k, t in saved.items():
        if k not in current or tuple(t.shape) != tuple(current[k].shape):
            want = tuple(current[k].shape) if k in current else "no such tensor"
            raise ValueError(f"saved whitening {k!r} has shape {tuple(t.shape)}, the stage "
                             f"expects {want}")
        out[k] = t.to(current[k])
    return out


class EncodesNothing:
    """For a stage kind with nothing to compute per frame ahead of its ``rows``: what a
    :class:`models.read_cache.ReadCache` keeps is what the stage reads."""

    def encode(self, v: Tensor) -> Tensor:
        """What the stage reads, as it is."""
        return v

    def encoded_rows(self, v: Tensor, generator: torch.Generator | None = None,
                     index: Tensor | None = None) -> Tensor:
        """:meth:`rows` of :meth:`encode`'s output (its entries ``index``, default all)."""
        return self.rows(v if index is None else v[index], generator)
