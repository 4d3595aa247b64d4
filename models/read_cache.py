"""What a stage reads, computed once per frame while the stages below it are frozen.

Greedy training (:class:`models.stack.RBMStack`) trains stage k on the output of stages
0..k-1, which do not change while k trains; a worker reads each of its frames once an epoch, so
without a cache every epoch runs every frame through the stages below again (for a pyramid
stage, at every size: most of a step's time). :class:`ReadCache` keeps ``stack.reads(frame, k)``
per frame, keyed by the frame's bytes (a digest: identical frames have identical reads, so the
cache can never serve the wrong frame's), up to a memory budget; frames past the budget are
computed each time. The cached values are the very values the stack computes, so a run with the
cache is bit-identical to one without. They are kept and returned channels-last (an (N, C, h, w)
view of (N, h, w, C) memory): the stage above reads windows, and a window's C values at one
position are then adjacent.

Memory: ``sum_i C h_i w_i`` values a frame (the stage's levels, :meth:`models.stack.StackConfig.
level_shapes`), in the stack's dtype.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import Tensor


def frame_key(frame: np.ndarray) -> bytes:
    """A 16-byte digest of one frame's bytes (and shape)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(frame.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(frame).data)
    return h.digest()


def bytes_per_frame(config, stage: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of what stage ``stage`` of a stack with :class:`models.stack.StackConfig`
    ``config`` reads from one frame (every level) in ``dtype``."""
    shapes = config.level_shapes(stage)
    return sum(math.prod(s) for s in shapes) * torch.finfo(dtype).bits // 8


class ReadCache:
    """``stack.reads(frames, stage)`` with each frame's result kept (``budget_bytes`` at most).

    Parameters
    ----------
    stack : a :class:`models.stack.RBMStack` whose stages below ``stage`` stay fixed for the
        cache's life (the caller's promise: greedy training of ``stage``).
    stage : the stage whose input is cached.
    budget_bytes : memory the cached reads may take; 0 turns the cache off.
    """

    def __init__(self, stack, stage: int, budget_bytes: int) -> None:
        self.stack, self.stage = stack, stage
        self.capacity = budget_bytes // max(1, bytes_per_frame(stack.config, stage, stack.dtype))
        self.levels: dict[bytes, list[Tensor]] = {}
        self.hits = self.misses = 0

    def reads(self, frames: np.ndarray) -> Tensor | list[Tensor]:
        """As ``stack.reads(frames, stage)`` for uint8 frames (N, C, H, W): a list of levels
        (N, C, h_i, w_i) for a competitive stage, else one tensor."""
        if self.capacity == 0 or len(frames) == 0:
            return self.stack.reads(torch.from_numpy(np.ascontiguousarray(frames)), self.stage)
        keys = [frame_key(f) for f in frames]
        missing = [i for i, k in enumerate(keys) if k not in self.levels]
        at = {i: j for j, i in enumerate(missing)}
        new = []
        if missing:
            new = self.stack.reads(torch.from_numpy(np.ascontiguousarray(frames[missing])),
                                   self.stage)
            new = [x.permute(0, 2, 3, 1) for x in (new if isinstance(new, list) else [new])]
            for j, i in enumerate(missing):
                if keys[i] not in self.levels and len(self.levels) < self.capacity:
                    self.levels[keys[i]] = [x[j].contiguous() for x in new]
        self.hits += len(frames) - len(missing)
        self.misses += len(missing)
        n_levels = len(new) if missing else len(self.levels[keys[0]])
        out = [torch.stack([new[n][at[i]] if i in at else self.levels[k][n]
                            for i, k in enumerate(keys)]).permute(0, 3, 1, 2)
               for n in range(n_levels)]
        return out if self.stack.config.stages[self.stage].kind == "competitive" else out[0]
