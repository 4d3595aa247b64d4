"""Units of a stack, named by ``(stage, layer, index)``, and the up-pass that reaches them.

A layer is one of the maps a stage gives (:mod:`models.stages`): ``"hidden"`` (a local stage's
P(h = 1 | v), a tied stage's filter responses), ``"pooled"`` (their pooling, before any
normalisation: still each unit's own response; a competitive stage's units pooled over every
position and size) or ``"pooled_lcn"`` (a local stage's output, after contrast normalisation
across maps; a unit there is partly a read-out of its neighbours, so it is scored but never the
headline). ``index`` is the flat index into the layer's ``(C, H, W)`` maps in C-major order:
``map = index // (H W)``, ``y, x = divmod(index % (H W), W)``.

:func:`up_pass` is the up-pass in differentiable torch ops (the stack's own methods run under
``no_grad`` and, on CPU, through fused kernels), so gradients of a unit's activation with
respect to the input frame exist (optimal stimuli, Le et al. 2012, section 4.3).
:func:`stage_maps` is the fast no-grad path for scanning a dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

from models.stack import RBMStack, StackConfig
from models.stages import STAGE_KINDS

Layer = Literal["pooled", "hidden", "pooled_lcn"]
#: A unit's own response: the layers that can name the headline unit (ties go to the first).
LAYERS: tuple[str, ...] = ("hidden", "pooled")
#: Normalised across units: scored and drawn, labelled, never the headline.
NORMALISED: tuple[str, ...] = ("pooled_lcn",)


def stage_layers(config: StackConfig, stage: int) -> tuple[str, ...]:
    """The layers stage ``stage`` gives, by its kind."""
    return STAGE_KINDS[config.stages[stage].kind].layers


def layer_shape(config: StackConfig, stage: int, layer: Layer) -> tuple[int, int, int]:
    """(C, H, W) of ``layer`` of stage ``stage``."""
    if layer not in stage_layers(config, stage):
        raise ValueError(f"layer={layer!r}: stage {stage} ({config.stages[stage].kind}) has "
                         f"{stage_layers(config, stage)}")
    return config.layer_shapes(stage)["hidden" if layer == "hidden" else "output"]


def unit_position(shape: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    """(map, y, x) of flat ``index`` in maps of ``shape`` (C, H, W), C-major."""
    C, H, W = shape
    if not 0 <= index < C * H * W:
        raise IndexError(f"index={index} out of range for a layer of shape {shape}")
    y, x = divmod(index % (H * W), W)
    return index // (H * W), y, x


def up_pass(stack: RBMStack, x: Tensor, stage: int, layer: Layer = "pooled") -> Tensor:
    """Maps (N, C, H, W) of ``layer`` at ``stage`` from float frames ``x`` (N, C_in, S, S) in
    [0, 1], differentiable in ``x``; ``"pooled_lcn"`` equals ``stack.transform(x, stage)``."""
    return _layer_of(stack, x, stage, layer, differentiable=True)


@torch.no_grad()
def layer_maps(stack: RBMStack, x: Tensor, stage: int, layer: Layer = "pooled") -> Tensor:
    """:func:`up_pass` without gradients, through the stages' own (fused on CPU) methods: the
    same maps up to float rounding, faster."""
    return _layer_of(stack, x, stage, layer, differentiable=False)


def _layer_of(stack: RBMStack, x: Tensor, stage: int, layer: Layer, *,
              differentiable: bool) -> Tensor:
    """``layer``'s maps at ``stage`` of one :meth:`RBMStack.walk` from float frames ``x``."""
    x = x.to(device=stack.device, dtype=stack.dtype)
    for k, maps in stack.walk(x, differentiable=differentiable):
        if k == stage:
            return maps[layer]
    raise IndexError(f"stage={stage} out of range: the stack has {stack.n_layers} stages")


def stage_maps(stack: RBMStack, frames: Tensor) -> Iterator[tuple[int, dict[str, Tensor]]]:
    """``(k, {layer: maps (N, C, H, W)})`` for every stage in order, from uint8/float frames,
    in one pass through the stack's own (fused on CPU) methods."""
    yield from stack.walk(stack.unit_frames(frames))


def stage_outputs(stack: RBMStack, frames: Tensor, top: int,
                  layer: Layer = "pooled") -> list[Tensor]:
    """``layer``'s maps (N, C_k, H_k, W_k) of stages ``0..top`` (see :func:`stage_maps`)."""
    out = []
    for k, maps in stage_maps(stack, frames):
        out.append(maps[layer])
        if k == top:
            break
    return out
