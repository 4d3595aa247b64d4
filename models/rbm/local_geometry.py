"""Geometry of a locally connected RBM: receptive fields on a grid, and the layouts between them.

Visible maps ``v (C, H, W)``; hidden units sit on a grid of ``Ph x Pw = P`` receptive-field
positions (field ``r x r``, stride ``s``: ``Ph = (H - r) // s + 1``), ``K`` maps per position.
Position ``p`` (row-major on the grid) sees the patch ``v[:, y:y+r, x:x+r]`` flattened to
``D = C r r`` values.

:class:`LocalGeometry` holds these numbers (validated once) and the layout helpers both
backends share: the unfold (:meth:`LocalGeometry.patches`), its adjoint the fold
(:meth:`LocalGeometry.fold`), and the conversions between public hidden maps ``(N, K, Ph, Pw)``
and the internal ``(P, N, K)`` layout. Patches and images are kept batch-last in memory
((P, D, N), (C, H, W, N)) so both copies move runs of N contiguous values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def positions(size: int, field: int, stride: int) -> int:
    """Number of receptive-field positions along one side: (size - field) // stride + 1."""
    return (size - field) // stride + 1


@dataclass(frozen=True)
class LocalGeometry:
    """Receptive fields of side ``field`` every ``stride`` pixels over ``in_shape`` maps.

    Attributes
    ----------
    in_shape : visible maps ``(C, H, W)``.
    field : receptive-field side ``r`` (pixels of the input maps).
    stride : step between neighbouring fields ``s``.
    n_maps : hidden units per position ``K``.
    """

    in_shape: tuple[int, int, int]
    field: int
    stride: int
    n_maps: int

    def __post_init__(self) -> None:
        C, H, W = (int(x) for x in self.in_shape)
        if min(C, H, W) < 1:
            raise ValueError(f"in_shape={tuple(self.in_shape)} must be positive (C, H, W)")
        if self.field < 1 or self.field > min(H, W):
            raise ValueError(f"field={self.field} must be in [1, {min(H, W)}] for input {H}x{W}")
        if self.stride < 1:
            raise ValueError(f"stride={self.stride} must be >= 1")
        if self.n_maps < 1:
            raise ValueError(f"n_maps={self.n_maps} must be >= 1")
        object.__setattr__(self, "in_shape", (C, H, W))

    @property
    def grid(self) -> tuple[int, int]:
        """Positions per column and per row ``(Ph, Pw)``."""
        _, H, W = self.in_shape
        return positions(H, self.field, self.stride), positions(W, self.field, self.stride)

    @property
    def n_positions(self) -> int:
        """Receptive-field positions ``P = Ph * Pw``."""
        Ph, Pw = self.grid
        return Ph * Pw

    @property
    def patch_size(self) -> int:
        """Values per receptive field ``D = C r r``."""
        return self.in_shape[0] * self.field * self.field

    @property
    def n_hidden(self) -> int:
        """Total hidden units ``P K``."""
        return self.n_positions * self.n_maps

    @property
    def n_visible(self) -> int:
        """Total visible units ``C H W``."""
        C, H, W = self.in_shape
        return C * H * W

    def check_maps(self, v: Tensor) -> None:
        """Raise ValueError unless v is (N, C, H, W) with this geometry's (C, H, W)."""
        if v.dim() != 4 or tuple(v.shape[1:]) != self.in_shape:
            shape = tuple(v.shape)
            raise ValueError(f"input {shape} is not (N, *in_shape) with in_shape={self.in_shape}")

    def patches(self, v: Tensor, out: Tensor | None = None) -> Tensor:
        """unfold: (N, C, H, W) -> (P, N, C*r*r), one strided copy, positions row-major.

        The result is stored batch-last, ``(P, D, N)`` in memory, and returned as its
        transposed view (P, N, D): the copy then moves runs of N contiguous values instead of
        r, and :meth:`fold` can add whole groups of patches with the same layout.
        ``out`` (P, D, N) (a slice of a reused workspace) receives the copy instead of a fresh
        allocation.
        """
        N, C, H, W = v.shape
        if (C, H, W) != self.in_shape:
            raise ValueError(f"input maps {(C, H, W)} != LocalRBM in_shape {self.in_shape}")
        vt = v.permute(1, 2, 3, 0)  # (C, H, W, N)
        if not vt.is_contiguous():
            vt = vt.contiguous()  # one small copy of the image batch
        Ph, Pw = self.grid
        r, s = self.field, self.stride
        sc, sh, sw, _ = vt.stride()
        view = vt.as_strided(
            (Ph, Pw, C, r, r, N), (s * sh, s * sw, sc, sh, sw, 1)
        )  # (Ph, Pw, C, r, r, N), no copy
        if out is None:
            out = torch.empty(self.n_positions, self.patch_size, N, device=v.device, dtype=v.dtype)
        out.unflatten(1, (C, r, r)).unflatten(0, (Ph, Pw)).copy_(view)  # (Ph, Pw, C, r, r, N)
        return out.transpose(1, 2)  # (P, N, D) view of (P, D, N)

    def fold(self, patches: Tensor, bias: Tensor | None = None) -> Tensor:
        """fold: (P, N, C*r*r) -> (N, C, H, W), overlapping patches summed (plus ``bias``).

        With ``q = ceil(r / s)``, positions whose grid indices agree modulo ``q`` on both axes
        have disjoint fields, so each of the ``q^2`` residue groups is added at once into a
        strided view of a batch-last (C, H, W, N) image: no scatter, no col2im. The result is
        the (N, C, H, W) view of that buffer.
        """
        P, N, D = patches.shape
        C, H, W = self.in_shape
        Ph, Pw = self.grid
        r, s = self.field, self.stride
        q = -(-r // s)
        cols = patches.transpose(1, 2)  # (P, D, N)
        if not cols.is_contiguous():
            cols = cols.contiguous()
        y = cols.view(Ph, Pw, C, r, r, N)
        out = torch.empty(C, H, W, N, device=patches.device, dtype=patches.dtype)
        if bias is None:
            out.zero_()
        else:
            out.copy_(bias.unsqueeze(3).expand(C, H, W, N))
        sc, sh, sw, _ = out.stride()
        for a in range(min(q, Ph)):
            for b in range(min(q, Pw)):
                ma, nb = len(range(a, Ph, q)), len(range(b, Pw, q))
                region = out.as_strided(
                    (C, ma, r, nb, r, N),
                    (sc, s * q * sh, sh, s * q * sw, sw, 1),
                    s * a * sh + s * b * sw,
                )  # (C, ma, r, nb, r, N): the group's disjoint fields
                region.add_(y[a::q, b::q].permute(2, 0, 3, 1, 4, 5))
        return out.permute(3, 0, 1, 2)  # (N, C, H, W) view of (C, H, W, N)

    def to_internal(self, h: Tensor) -> Tensor:
        """Hidden maps (N, K, Ph, Pw) -> internal (P, N, K)."""
        N = h.shape[0]
        return h.permute(2, 3, 0, 1).reshape(self.n_positions, N, self.n_maps)

    def to_maps(self, h: Tensor) -> Tensor:
        """Internal (P, N, K) -> hidden maps (N, K, Ph, Pw)."""
        Ph, Pw = self.grid
        N = h.shape[1]
        return h.reshape(Ph, Pw, N, self.n_maps).permute(2, 3, 0, 1)  # (N, K, Ph, Pw)
