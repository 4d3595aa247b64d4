"""Unlearned detectors a learned unit must beat: linear filters cut from training frames, the
same stack with random or training-patch weights (:func:`reweighted_stack`), and the exemplar
stack with its competitive units at spread-out training windows (:func:`spread_exemplar_stack`).

A trained unit that scores well on a probe might only be doing what any template does. The
baseline draws ``n_filters`` frames (or patches) of the training data, contrast-normalises them
exactly as the stack's input (``RBMStack.preprocess``), removes each one's mean and scales it to
unit norm, and uses ``f . preprocess(x)`` as a unit. With ``field`` equal to the frame side a
filter is a whole frame: the size of the field of a top-stage unit that sees the whole frame
(the unit the face-neuron search aims for, and what the probe's frame-filling faces need). A
smaller ``field`` cuts a random ``field x field`` patch from each frame and applies it at the
centre of the probe image.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from models.competitive.seeding import SPREAD_CANDIDATES, spread_picks

# The spread picks' k-means++ (scikit-learn, numpy's BLAS) runs with one BLAS thread: its
# products are small (one pick against a few thousand candidates at a time), and beside
# torch's and numba's OpenMP threads a two-thread BLAS spends most of its time waiting. The
# picks are the same. Only the BLAS pool is limited: torch's own threads, and so its
# roundings, stay as they are.
SPREAD_BLAS = 1


def patch_filters(x: Tensor, n_filters: int, field: int, generator: torch.Generator) -> Tensor:
    """(n_filters, C, field, field) zero-mean, unit-norm patches of the preprocessed frames
    ``x (N, C, H, W)``: random frames (with replacement when N < n_filters), random positions."""
    n, _, h, w = x.shape
    if field > min(h, w):
        raise ValueError(f"field={field} is larger than the frames ({h}x{w})")
    frames = torch.randint(n, (n_filters,), generator=generator)
    ys = torch.randint(h - field + 1, (n_filters,), generator=generator)
    xs = torch.randint(w - field + 1, (n_filters,), generator=generator)
    rows = torch.arange(field)
    patches = x[frames[:, None, None], :, (ys[:, None] + rows)[:, :, None],
                (xs[:, None] + rows)[:, None, :]]  # (F, field, field, C)
    f = patches.permute(0, 3, 1, 2).reshape(n_filters, -1)
    f = f - f.mean(1, keepdim=True)
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return f.reshape(n_filters, x.shape[1], field, field)


def filter_responses(x: Tensor, filters: Tensor) -> Tensor:
    """(N, F) responses of filters ``(F, C, r, r)`` applied at the centre of ``x (N, C, H, W)``."""
    r = filters.shape[-1]
    top, left = (x.shape[2] - r) // 2, (x.shape[3] - r) // 2
    centre = x[:, :, top:top + r, left:left + r].reshape(len(x), -1)
    return centre @ filters.reshape(len(filters), -1).T


@torch.no_grad()
def reweighted_stack(stack, frames: Tensor | None, weights: str, generator: torch.Generator,
                     n_frames: int = 256):
    """The same architecture as ``stack`` (a :class:`models.stack.RBMStack`) with ``"random"``
    or ``"exemplar"`` weights: stage by stage, each stage fits what it fits to data (whitening)
    on ``n_frames`` random ``frames`` (uint8 (N, C, H, W)) and takes its initial or its exemplar
    weights (:meth:`models.stack.RBMStack.prepare`; a local stage's exemplars are one training
    input's patch per map and position; a competitive stage's, random training windows whatever
    its ``init``). Same fields and pooling as the trained stack: what untrained weights, or
    training patches alone, give. ``frames`` may be None only for ``"random"`` and a stack
    whose stages fit nothing to data.
    """
    from models.stack import RBMStack

    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    config = replace(stack.config, stages=tuple(replace(st, init="exemplar")
                                                for st in stack.config.stages))
    out = RBMStack(config, device="cpu", generator=torch.Generator().manual_seed(seed))
    if frames is None:
        if weights != "random" or any(s.needs_data for s in out.stages):
            raise ValueError(f"{weights} weights for this stack need training frames")
        return out
    x = torch.as_tensor(frames)[torch.randperm(len(frames), generator=generator)[:n_frames]]
    for k, stage in enumerate(out.stages):
        if weights == "exemplar" or stage.needs_data:
            out.prepare(k, x, weights=weights, generator=generator)
    return out


@torch.no_grad()
def spread_exemplar_stack(exemplar, frames: Tensor, generator: torch.Generator,
                          n_frames: int = 256):
    """``exemplar`` (a :func:`reweighted_stack` with ``"exemplar"`` weights) with the units of
    its competitive top stage moved to spread-out training windows: k-means++ seeding
    (Arthur & Vassilvitskii 2007, ``sklearn.cluster.kmeans_plusplus`` with one trial per pick)
    on the unit sphere among ``SPREAD_CANDIDATES * K`` of the stage's training rows (unit-length
    whitened windows of ``n_frames`` random ``frames``): each next window drawn with probability
    proportional to its squared distance ``2 - 2 cos`` to the nearest one already picked.

    Random exemplars are mostly background windows; picking them spread out is itself a weak
    unsupervised learner (about one unit per region of window space, faces' region included),
    so a learned unit must beat it too. Everything else (stage 0, the whitening, the pooling) is
    the exemplar stack's. Returns a new stack, or None when the top stage is not competitive.
    """
    from models.stack import RBMStack

    top = exemplar.n_layers - 1
    if exemplar.config.stages[top].kind != "competitive":
        return None
    out = RBMStack(exemplar.config, device="cpu", generator=torch.Generator().manual_seed(
        int(torch.randint(2**31 - 1, (1,), generator=generator))))
    out.load_state_dict(exemplar.state_dict())
    x = torch.as_tensor(frames)[torch.randperm(len(frames), generator=generator)[:n_frames]]
    rows = out.stage_input(x, top, generator)
    k = out.config.stages[top].n_maps
    pool = rows[torch.randperm(len(rows), generator=generator)[:SPREAD_CANDIDATES * k]]
    with threadpool_limits(SPREAD_BLAS, user_api="blas"):  # see SPREAD_BLAS
        pick = spread_picks(pool, k, generator)
    out.stages[top].learner.init_from_data(pool, pick=pick)
    return out
