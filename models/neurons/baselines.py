"""Unlearned detectors a learned unit must beat: linear filters cut from training frames, and
the same stack with training patches as its weights (:func:`exemplar_stack`).

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

import torch
from torch import Tensor


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
def exemplar_stack(stack, frames: Tensor, generator: torch.Generator, n_frames: int = 256):
    """The same stack with exemplar weights: each stage's map ``k`` at position ``p`` has as
    weights the patch at ``p`` of one random training frame's stage input (zero-mean, then
    scaled and biased so that its input ``W.v + c`` has mean 0 and std 1 over ``n_frames``
    training frames), stage by stage through the exemplar stages below. Same fields, same
    pooling and normalisation as the trained stack: what training patches alone give.

    ``stack`` is a :class:`models.stack.RBMStack`; ``frames`` uint8 (N, C, H, W).
    """
    from models.stack import RBMStack

    ex = RBMStack(stack.config, device="cpu", generator=torch.Generator().manual_seed(0))
    pick = torch.randperm(len(frames), generator=generator)[:n_frames]
    x = torch.as_tensor(frames)[pick]
    for k, rbm in enumerate(ex.rbms):
        pv = rbm.geometry.patches(ex.stage_input(x, k)).contiguous()  # (P, N, D)
        src = torch.randint(pv.shape[1], (rbm.n_maps,), generator=generator)
        w = pv[:, src, :]  # (P, K, D): one frame's patches per map
        w = w - w.mean(2, keepdim=True)
        pre = torch.bmm(pv, w.transpose(1, 2))  # (P, N, K)
        mu, sd = pre.mean(1), pre.std(1).clamp_min(1e-6)  # (P, K)
        rbm.params["W"].copy_(w / sd[:, :, None])
        rbm.params["c"].copy_(-mu / sd)
    return ex
