"""Units of a stack, named by ``(stage, layer, index)``, and the up-pass that reaches them.

A layer is ``"hidden"`` (the stage RBM's hidden probabilities ``P(h = 1 | v)``), ``"pooled"``
(their L2 pooling, before any normalisation: still each unit's own response) or ``"pooled_lcn"``
(after contrast normalisation across maps, what ``RBMStack.transform(x, stage)`` returns and the
next stage sees; a unit there is partly a read-out of its neighbours, so it is scored but never
the headline). ``index`` is the flat index into the layer's ``(C, H, W)``
maps in C-major order: ``map = index // (H W)``, ``y, x = divmod(index % (H W), W)``.

:func:`up_pass` is the deterministic up-pass written with differentiable torch ops (the stack's
own methods run under ``no_grad`` and, on CPU, through fused kernels), so gradients of a unit's
activation with respect to the input frame exist (optimal stimuli, Le et al. 2012, section 4.3).
:func:`stage_outputs` is the fast no-grad path for scanning a dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from models.layers import l2_pool, local_contrast_normalize
from models.rbm.local import LocalRBM, positions
from models.stack import RBMStack, StackConfig

Layer = Literal["pooled", "hidden", "pooled_lcn"]
#: A unit's own response: the layers that can name the headline unit (ties go to the first).
LAYERS: tuple[str, ...] = ("hidden", "pooled")
#: Normalised across units: scored and drawn, labelled, never the headline.
NORMALISED: tuple[str, ...] = ("pooled_lcn",)


def layer_shape(config: StackConfig, stage: int, layer: Layer) -> tuple[int, int, int]:
    """(C, H, W) of ``layer`` of stage ``stage``."""
    if layer not in LAYERS + NORMALISED:
        raise ValueError(f"layer={layer!r} must be one of {LAYERS + NORMALISED}")
    if layer != "hidden":
        return config.output_shape(stage)
    _, size, _ = config.input_shapes()[stage]
    st = config.stages[stage]
    grid = positions(size, st.field, st.stride)
    return (st.n_maps, grid, grid)


def unit_position(shape: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    """(map, y, x) of flat ``index`` in maps of ``shape`` (C, H, W), C-major."""
    C, H, W = shape
    if not 0 <= index < C * H * W:
        raise IndexError(f"index={index} out of range for a layer of shape {shape}")
    y, x = divmod(index % (H * W), W)
    return index // (H * W), y, x


def hidden_probabilities(rbm: LocalRBM, v: Tensor) -> Tensor:
    """P(h_pk = 1 | v) = sigmoid(c_pk + W_pk . patch_p(v)) as maps (N, K, Ph, Pw), with autograd.

    ``F.unfold`` orders a patch's values (C, r, r) and positions row-major, as
    ``LocalRBM.patches`` does, so ``W (P, K, C r r)`` applies directly.
    """
    N = v.shape[0]
    cols = F.unfold(v, rbm.field, stride=rbm.stride)  # (N, D, P)
    x = torch.einsum("pkd,ndp->npk", rbm.params["W"], cols) + rbm.params["c"]  # (N, P, K)
    Ph, Pw = rbm.grid
    return torch.sigmoid(x).transpose(1, 2).reshape(N, rbm.n_maps, Ph, Pw)


def up_pass(stack: RBMStack, x: Tensor, stage: int, layer: Layer = "pooled") -> Tensor:
    """Maps (N, C, H, W) of ``layer`` at ``stage`` from float frames ``x`` (N, C_in, S, S).

    ``"pooled_lcn"`` equals ``stack.transform(x, stage)`` for float input, but is differentiable
    in ``x``: LCN -> [sigmoid if Bernoulli-visible] -> P(h|v) -> L2 pool -> LCN, stage by stage;
    ``"pooled"`` stops before the last LCN, ``"hidden"`` before the last pooling.
    """
    cfg = stack.config
    v = local_contrast_normalize(x.to(device=stack.device, dtype=stack.dtype),
                                 cfg.input_lcn_sigma)
    for k in range(stage + 1):
        st = cfg.stages[k]
        if st.visible == "bernoulli":
            v = torch.sigmoid(v)
        h = hidden_probabilities(stack.rbms[k], v)
        if k == stage and layer == "hidden":
            return h
        pooled = l2_pool(h, st.pool, st.pool_stride)
        if k == stage and layer == "pooled":
            return pooled
        v = local_contrast_normalize(pooled, st.lcn_sigma)
    return v


@torch.no_grad()
def stage_maps(stack: RBMStack, frames: Tensor) -> Iterator[tuple[int, dict[str, Tensor]]]:
    """``(k, {"hidden", "pooled", "pooled_lcn": maps (N, C, H, W)})`` for every stage in order,
    from uint8/float frames, in one pass through the stack's own (fused on CPU) methods."""
    v = stack.preprocess(frames)
    for k, rbm in enumerate(stack.rbms):
        st = stack.config.stages[k]
        hidden = rbm.mean_hiddens(stack.visible_form(v, k))  # (N, K, Ph, Pw)
        pooled = l2_pool(hidden, st.pool, st.pool_stride)  # (N, K, S, S)
        v = local_contrast_normalize(pooled, st.lcn_sigma)
        yield k, {"hidden": hidden, "pooled": pooled, "pooled_lcn": v}


def stage_outputs(stack: RBMStack, frames: Tensor, top: int,
                  layer: Layer = "pooled") -> list[Tensor]:
    """``layer``'s maps (N, C_k, H_k, W_k) of stages ``0..top`` (see :func:`stage_maps`)."""
    out = []
    for k, maps in stage_maps(stack, frames):
        out.append(maps[layer])
        if k == top:
            break
    return out
