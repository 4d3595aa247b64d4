"""What a stage trains on, with each frame's part of it computed once while the stages below
are frozen.

Greedy training (:class:`models.stack.RBMStack`) trains stage k on the output of stages
0..k-1, which do not change while k trains; nor does what stage k fitted to data before its
training (a competitive stage's whitening). A worker reads each of its frames once an epoch, so
without a cache every epoch runs every frame through the stages below again (for a pyramid
stage, at every size: most of a step's time).

:class:`ReadCache` keeps, per frame, the stage's *encoding* of what it reads,
``stage.encode(stack.reads(frame, k))`` (:mod:`models.stages`): a competitive stage's every
window whitened (one convolution per level, at the convolution's speed, instead of one product
per sampled window on every read); for the other kinds, what the stage reads. Frames are keyed
by their bytes (a digest: identical frames have identical encodings, so the cache can never serve
the wrong frame's), up to a memory budget; frames past it are encoded each time. The values are
the ones ``stage.encode`` computes, so a run is bit-identical whichever frames were cached. They
are kept in one store per level, a frame a row (doubled as frames come, up to the budget),
channels-last (an (S, C, h, w) view of (S, h, w, C) memory): a position's C values are adjacent,
which is what the row sampler reads.

:class:`StageInput` is what workers and the one-process loops call for a batch's rows, the
strategy chosen once: with a budget, the stage's ``encoded_rows`` of the cached encoding, read
in place (the store and the batch's rows of it, :meth:`ReadCache.indexed`: a step samples a few
windows of each frame, and copying the frames' whole encodings out first took most of a cached
step's input time); without (a budget of 0), the stage's ``rows`` of what it reads, computed
each time (a competitive stage then whitens just the windows it samples). The two give the same
rows up to float rounding.

Memory: :func:`bytes_per_frame` (the encoding's values a frame, in the stack's dtype).
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


def encoded_shapes(config, stage: int) -> list[tuple[int, int, int]]:
    """(C, h, w) of each level of stage ``stage``'s encoding, for a stack with
    :class:`models.stack.StackConfig` ``config``: a competitive stage's whitened windows
    (``dims`` values at each of its window positions), else what the stage reads."""
    st = config.stages[stage]
    levels = config.level_shapes(stage)
    if st.kind != "competitive":
        return levels
    return [(st.dims, (h - st.field) // st.stride + 1, (w - st.field) // st.stride + 1)
            for _, h, w in levels]


def bytes_per_frame(config, stage: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of stage ``stage``'s encoding of one frame (every level) in ``dtype``."""
    return (sum(math.prod(s) for s in encoded_shapes(config, stage))
            * torch.finfo(dtype).bits // 8)


class ReadCache:
    """``stage.encode(stack.reads(frames, stage))`` with each frame's result kept
    (``budget_bytes`` at most).

    Parameters
    ----------
    stack : a :class:`models.stack.RBMStack` whose stages below ``stage``, and the fitted parts
        of ``stage`` itself, stay fixed for the cache's life (the caller's promise: greedy
        training of ``stage``).
    stage : the stage whose encoded input is cached.
    budget_bytes : memory the cached encodings may take; 0 keeps none.
    """

    def __init__(self, stack, stage: int, budget_bytes: int) -> None:
        self.stack, self.stage = stack, stage
        self.capacity = budget_bytes // max(1, bytes_per_frame(stack.config, stage, stack.dtype))
        self.slots: dict[bytes, int] = {}  # frame key -> its row in every level of the store
        self.store: list[Tensor] = []  # per level (rows, h, w, C), rows <= capacity
        self.expected = 0  # frames a fill is placing: the store grows to them at once
        self.hits = self.misses = 0

    def __len__(self) -> int:
        """Frames whose encoding the cache holds."""
        return len(self.slots)

    def encode(self, frames: np.ndarray) -> list[Tensor]:
        """The stage's encoding of uint8 frames (N, C, H, W), computed now: a list of levels."""
        x = torch.from_numpy(np.ascontiguousarray(frames))
        out = self.stack.stages[self.stage].encode(self.stack.reads(x, self.stage))
        return out if isinstance(out, list) else [out]

    def fill(self, frames: np.ndarray, batch: int = 64) -> int:
        """Encode ``frames`` (uint8 (N, C, H, W)) ahead of their first read, up to the capacity;
        returns how many the cache holds. A worker fills its cache before its first step, so
        its steps run at one speed from the start: with the encoding paid inside the first
        epoch, a worker that started later would step slowly while the others ran ahead, and
        the frames of its shards would be under-represented in the stage's updates."""
        frames = frames[: max(0, self.capacity - len(self))]
        self.expected = len(self) + len(frames)  # one allocation of the store, not doublings
        try:
            for i in range(0, len(frames), batch):
                self._place(frames[i:i + batch])
        finally:
            self.expected = 0
        return len(self)

    def _place(self, frames: np.ndarray) -> tuple[list[int | None], list[Tensor], dict]:
        """Each frame's slot, encoding the frames not seen before and keeping them while the
        capacity lasts: (slot or None per frame, the new encodings as channels-last levels (M,
        h, w, C), ``{frame position: row of the new encodings}``)."""
        keys = [frame_key(f) for f in frames]
        missing = [i for i, k in enumerate(keys) if k not in self.slots]
        at = {i: j for j, i in enumerate(missing)}
        new = []
        if missing or not len(frames):
            new = [x.permute(0, 2, 3, 1) for x in self.encode(frames[missing])]
            for j, i in enumerate(missing):
                if keys[i] not in self.slots and len(self.slots) < self.capacity:
                    slot = self.slots[keys[i]] = len(self.slots)
                    self._grow(slot + 1, new)
                    for level, x in zip(self.store, new, strict=True):
                        level[slot] = x[j]
        self.hits += len(frames) - len(missing)
        self.misses += len(missing)
        return [self.slots.get(k) for k in keys], new, at

    def _grow(self, rows: int, like: list[Tensor]) -> None:
        """Make the store hold at least ``rows`` frames (levels shaped as ``like``'s entries):
        it doubles as frames come, up to the capacity, so its memory follows the frames cached
        and not the budget; during a :meth:`fill` it takes the frames being filled at once (each
        doubling copies the store and faults fresh pages in)."""
        have = len(self.store[0]) if self.store else 0
        if rows <= have:
            return
        size = min(self.capacity, max(rows, 2 * have, 64, self.expected))
        grown = [torch.empty((size, *x.shape[1:]), dtype=x.dtype, device=x.device) for x in like]
        for old, level in zip(self.store, grown, strict=False):
            level[:have] = old
        self.store = grown

    def reads(self, frames: np.ndarray) -> Tensor | list[Tensor]:
        """As ``stage.encode(stack.reads(frames, stage))`` for uint8 frames (N, C, H, W): a
        list of levels (N, C, h_i, w_i) for a competitive stage, else one tensor."""
        return self._unwrap(self._batch(*self._place(frames)))

    def indexed(self, frames: np.ndarray) -> tuple[Tensor | list[Tensor], Tensor]:
        """:meth:`reads` as (levels, index): the batch is the levels' entries ``index`` (N,).
        When every frame is in the cache the levels are the whole store, so no batch of
        encodings is copied out; otherwise they are :meth:`reads`'s, index the identity."""
        slots, new, at = self._place(frames)
        if self.store and all(s is not None for s in slots):
            levels = [x.permute(0, 3, 1, 2) for x in self.store]
            index = torch.tensor(slots, dtype=torch.long, device=levels[0].device)
        else:
            levels = self._batch(slots, new, at)
            index = torch.arange(len(frames), device=levels[0].device)
        return self._unwrap(levels), index

    def _batch(self, slots: list[int | None], new: list[Tensor], at: dict) -> list[Tensor]:
        """The batch's levels (N, C, h, w), channels-last, from the store and the new
        encodings (:meth:`_place`'s output)."""
        if len(at) == len(slots):
            return [x.permute(0, 3, 1, 2) for x in new]
        return [torch.stack([new[n][at[i]] if i in at else self.store[n][slot]
                             for i, slot in enumerate(slots)]).permute(0, 3, 1, 2)
                for n in range(len(self.store))]

    def _unwrap(self, levels: list[Tensor]) -> Tensor | list[Tensor]:
        """The levels for a competitive stage, the one tensor for the others."""
        return levels if self.stack.config.stages[self.stage].kind == "competitive" else levels[0]


class StageInput:
    """The rows stage ``stage`` of ``stack`` trains on, from uint8 frames: through a
    :class:`ReadCache` of ``budget_bytes`` (the stage's ``encoded_rows``), or with a budget
    of 0 from what the stage reads, computed each time (its ``rows``)."""

    def __init__(self, stack, stage: int, budget_bytes: int) -> None:
        self.stack, self.stage = stack, stage
        self.cache = ReadCache(stack, stage, budget_bytes) if budget_bytes > 0 else None

    def rows(self, frames: np.ndarray, generator: torch.Generator | None = None) -> Tensor:
        """The learner's input (rows, ...) for a batch of frames; ``generator`` draws the rows
        a stage samples."""
        st = self.stack.stages[self.stage]
        if self.cache is None:
            x = torch.from_numpy(np.ascontiguousarray(frames))
            return st.rows(self.stack.reads(x, self.stage), generator)
        encoded, index = self.cache.indexed(frames)
        return st.encoded_rows(encoded, generator, index)

    @torch.no_grad()
    def maps(self, frames: np.ndarray) -> dict[str, Tensor]:
        """The stage's maps (``stage.maps``: ``{layer: (N, ...)}``) of uint8 frames (N, C, H, W),
        from the cached encodings where the cache holds them: after training, a worker scores
        its own frames without running them through the stages below (or, for a competitive
        stage, the whitening) again."""
        st = self.stack.stages[self.stage]
        if self.cache is None:
            return st.maps(self.stack.reads(torch.from_numpy(np.ascontiguousarray(frames)),
                                            self.stage))
        encoded, index = self.cache.indexed(frames)
        if isinstance(encoded, list):
            return st.encoded_maps(encoded, index)
        return st.maps(encoded[index])
