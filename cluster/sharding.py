"""How parameters are split across parameter-server shards, and how updates are combined.

A locally connected RBM (Le et al. 2012) has untied weights per receptive-field position,
``W: (P, K, C*r*r)`` and hidden biases ``c: (P, K)``: positions are independent, so the shards
are contiguous blocks of positions along dim 0. A dense RBM (``W: (n_hidden, n_visible)``) is split
the same way, by blocks of hidden units (rows). Parameters that cannot be split by position or
hidden unit (the visible bias ``b: (C, H, W)`` or ``(n_visible,)``, a learned ``log_sigma``) go
whole to the last shard, which gets correspondingly fewer positions so the shards hold about the
same number of values: they are small (4,096 of the demo's 636,000 stage-0 values; 120,000 of
the paper's 261 million), and a shard of their own would cost every worker one more call per
period for almost no bytes.

Everything here is plain numpy / torch (no Ray), so the single-process reference uses the very
same split and the very same combination order as the parameter server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SPLIT_NAMES: tuple[str, ...] = ("W", "c")
"""Parameters split along dim 0 (positions of a local RBM, hidden units of a dense one)."""


@dataclass(frozen=True)
class ShardLayout:
    """Which part of every parameter each shard holds.

    Attributes
    ----------
    n_ps_shards : number of parameter-server shards (``train.n_ps_shards``).
    shapes : full shape of every parameter.
    bounds : for split parameters, ``(start, stop)`` along dim 0 for each shard.
    owner : for whole parameters, the shard that holds them (the last one).
    """

    n_ps_shards: int
    shapes: Mapping[str, tuple[int, ...]]
    bounds: Mapping[str, tuple[tuple[int, int], ...]]
    owner: Mapping[str, int]

    @classmethod
    def plan(cls, shapes: Mapping[str, Sequence[int]], n_ps_shards: int,
             split_names: Sequence[str] = SPLIT_NAMES) -> ShardLayout:
        """Split ``split_names`` by contiguous dim-0 blocks over all shards; the other
        parameters go whole to the last shard.

        Raises
        ------
        ValueError
            ``n_ps_shards`` < 1, split parameters disagree on dim 0, or there are more shards than
            positions (hidden units).
        """
        if n_ps_shards < 1:
            raise ValueError(f"n_ps_shards={n_ps_shards} must be >= 1")
        shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        split = [k for k in shapes if k in split_names]
        whole = [k for k in shapes if k not in split_names]
        if not split:
            raise ValueError(
                f"no parameter named {tuple(split_names)} to shard in {sorted(shapes)}")
        rows = {shapes[k][0] for k in split}
        if len(rows) != 1:
            raise ValueError(
                f"split parameters disagree on dim 0: {[(k, shapes[k]) for k in split]}")
        n_rows = rows.pop()
        if n_ps_shards > n_rows:
            raise ValueError(
                f"n_ps_shards={n_ps_shards} but the layer has only {n_rows} positions/hidden units "
                f"to split; use at most {n_rows} shards")
        # the last shard also holds the whole parameters: it gets fewer rows, so every shard
        # holds about the same number of values (at least one row each)
        row = sum(int(np.prod(shapes[k][1:], dtype=np.int64)) for k in split)
        extra = sum(int(np.prod(shapes[k], dtype=np.int64)) for k in whole)
        last = n_rows
        if n_ps_shards > 1:
            target = (n_rows * row + extra) / n_ps_shards
            last = min(max(round((target - extra) / row), 1), n_rows - n_ps_shards + 1)
        edges = np.linspace(0, n_rows - last, n_ps_shards).round().astype(int).tolist() + [n_rows]
        blocks = [(int(edges[i]), int(edges[i + 1])) for i in range(n_ps_shards)]
        bounds = {k: tuple(blocks) for k in split}
        owner = {k: n_ps_shards - 1 for k in whole}
        return cls(n_ps_shards=n_ps_shards, shapes=shapes, bounds=bounds, owner=owner)

    def names(self, shard: int) -> list[str]:
        """Parameter names shard ``shard`` holds a (non-empty) part of, in a fixed order."""
        out = [k for k, b in self.bounds.items() if b[shard][1] > b[shard][0]]
        return out + [k for k, s in self.owner.items() if s == shard]

    def shard_shapes(self, shard: int) -> dict[str, tuple[int, ...]]:
        """Shapes of shard ``shard``'s parts (what :meth:`split` gives it)."""
        out = {}
        for k in self.names(shard):
            shape = self.shapes[k]
            if k in self.bounds:
                lo, hi = self.bounds[k][shard]
                shape = (hi - lo, *shape[1:])
            out[k] = tuple(shape)
        return out

    def split(self, tensors: Mapping[str, torch.Tensor | np.ndarray], shard: int) -> dict:
        """Shard ``shard``'s part of ``tensors`` (views, no copies)."""
        out = {}
        for k in self.names(shard):
            if k in self.bounds:
                lo, hi = self.bounds[k][shard]
                out[k] = tensors[k][lo:hi]
            else:
                out[k] = tensors[k]
        return out

    def split_all(self, tensors: Mapping[str, torch.Tensor | np.ndarray]) -> list[dict]:
        """Every shard's part, in shard order."""
        return [self.split(tensors, j) for j in range(self.n_ps_shards)]

    def join(self, parts: Sequence[Mapping[str, np.ndarray | torch.Tensor]],
             out: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Reassemble full tensors from every shard's part (copied into ``out`` if given)."""
        if len(parts) != self.n_ps_shards:
            raise ValueError(f"expected {self.n_ps_shards} shard parts, got {len(parts)}")
        result: dict[str, torch.Tensor] = {}
        for k, shape in self.shapes.items():
            dst = out[k] if out is not None else None
            if k in self.owner:
                src = as_tensor(parts[self.owner[k]][k])
                if dst is None:
                    result[k] = src.clone()
                else:
                    dst.copy_(src)
                    result[k] = dst
                continue
            if dst is None:
                dst = torch.empty(shape, dtype=as_tensor(parts[0][k]).dtype
                                  if k in parts[0] else torch.float32)
            for j, (lo, hi) in enumerate(self.bounds[k]):
                if hi > lo:
                    dst[lo:hi].copy_(as_tensor(parts[j][k]))
            result[k] = dst
        return result

    def numel(self, shard: int) -> int:
        """Number of scalars shard ``shard`` holds."""
        return sum(int(np.prod(s, dtype=np.int64)) for s in self.shard_shapes(shard).values())

    def to_dict(self) -> dict:
        """Plain-data form (stored in checkpoints; older ones name the count ``n_shards``)."""
        return {"n_ps_shards": self.n_ps_shards,
                "shapes": {k: list(v) for k, v in self.shapes.items()},
                "bounds": {k: [list(b) for b in v] for k, v in self.bounds.items()},
                "owner": dict(self.owner)}

    @classmethod
    def from_dict(cls, d: Mapping) -> ShardLayout:
        """Inverse of :meth:`to_dict`."""
        count = d["n_ps_shards"] if "n_ps_shards" in d else d["n_shards"]
        return cls(n_ps_shards=int(count),
                   shapes={k: tuple(v) for k, v in d["shapes"].items()},
                   bounds={k: tuple(tuple(b) for b in v) for k, v in d["bounds"].items()},
                   owner={k: int(v) for k, v in d["owner"].items()})


def as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A torch view of ``x``; read-only numpy arrays from Ray's object store are viewed too
    (never written: callers copy out of them). ``uint16`` arrays are bfloat16 bit patterns
    written by :func:`pack` and come back as a float32 copy."""
    if isinstance(x, torch.Tensor):
        return x
    if x.dtype == np.uint16:
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16).float()
    if not x.flags.writeable:
        # Ray returns read-only arrays (zero-copy from the object store). torch warns about
        # non-writable memory; we only read from it.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(x)
    return torch.from_numpy(x)


def combine_updates(
    updates: Sequence[Mapping[str, np.ndarray | torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Mean of the workers' updates, summed in list order then divided (fixed order, so a
    synchronous run is reproducible and equals the single-process reference bit for bit)."""
    if not updates:
        raise ValueError("no updates to combine")
    out = {k: as_tensor(v).clone() for k, v in updates[0].items()}
    for u in updates[1:]:
        for k, v in u.items():
            out[k].add_(as_tensor(v))
    if len(updates) > 1:
        for v in out.values():
            v.div_(len(updates))
    return out


WIRE_BYTES = {"float32": 4, "bfloat16": 2}
"""Bytes per value on the wire of each transfer dtype (what :func:`pack` sends)."""
TRANSFER_DTYPES = tuple(WIRE_BYTES)


def pack(tensors: Mapping[str, torch.Tensor], dtype: str = "float32") -> dict[str, np.ndarray]:
    """What travels through Ray's object store: float32 numpy views (:func:`to_numpy`), or for
    ``dtype="bfloat16"`` the tensors rounded to bfloat16 (8 bits of mantissa, float32's range)
    as ``uint16`` bit patterns, half the bytes; :func:`as_tensor` turns those back into
    float32."""
    if dtype == "float32":
        return to_numpy(tensors)
    if dtype != "bfloat16":
        raise ValueError(f"transfer dtype {dtype!r}: use one of {TRANSFER_DTYPES}")
    return {k: v.detach().cpu().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            for k, v in tensors.items()}


def to_numpy(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """CPU numpy views (what travels through Ray's object store, zero-copy on the reader side)."""
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}
