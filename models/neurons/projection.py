"""What a unit's weights look like in pixel space.

Stage 0: a pooled unit L2-pools a ``pool x pool`` window of one hidden map; each hidden unit
there has its own (untied) field ``W[p, k]`` of shape (C, r, r): :func:`pooled_fields` returns
them. Above stage 0 weights act on feature maps, not pixels; :func:`pixel_projections` maps them
down through the *linearised* stack (sigmoids, L2 pooling and contrast normalisation replaced by
identity and sum pooling), so a unit's image is the weighted sum of the stage-0 fields it
reaches (its exact weights in that linear model, Erhan et al. 2009 / Lee et al. 2009 projection).
A competitive unit's image is its weights ``u_k`` taken back through the whitening and the tied
filters below, at the centre window: what it looks for, in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.neurons.units import Layer
from models.pooling import pyramid
from models.stack import RBMStack


def pooled_fields(stack: RBMStack, unit_map: int, y: int, x: int) -> Tensor:
    """Fields (pool, pool, C, r, r) of the hidden units pooled by stage-0 unit (map, y, x)."""
    st, rbm = stack.config.stages[0], stack.rbms[0]
    C = rbm.in_shape[0]
    Ph, Pw = rbm.grid
    W = rbm.params["W"].view(Ph, Pw, rbm.n_maps, C, rbm.field, rbm.field)
    y0, x0 = y * st.pool_stride, x * st.pool_stride
    return W[y0 : y0 + st.pool, x0 : x0 + st.pool, unit_map].detach().cpu()


def linear_up_pass(stack: RBMStack, x: Tensor, stage: int, layer: Layer = "pooled") -> Tensor:
    """The stack with every nonlinearity removed, stage by stage: a local stage's ``h = W .
    patch(v)``, a tied stage's filter correlation (sign split as ``h, -h``), window sums for
    pooling; a competitive stage's ``u_k . Z x`` (whitening without normalisation) at the centre
    window of its first pyramid size."""
    top = stack.config.stages[stage]
    v = pyramid(x, top.sizes[:1])[0] if top.sizes else x
    for k in range(stage + 1):
        st, stage_k = stack.config.stages[k], stack.stages[k]
        h = LINEAR[st.kind](stage_k, v)
        if k == stage and (layer == "hidden" or st.kind == "competitive"):
            return h
        if st.kind == "tied" and st.sign_split:
            h = torch.cat([h, -h], 1)
        v = F.avg_pool2d(h, st.pool, stride=st.pool_stride) * (st.pool * st.pool)
    return v


def _linear_local(stage, v: Tensor) -> Tensor:
    rbm = stage.learner
    cols = F.unfold(v, rbm.field, stride=rbm.stride)  # (N, D, P)
    h = torch.einsum("pkd,ndp->nkp", rbm.params["W"], cols)
    return h.reshape(v.shape[0], rbm.n_maps, *rbm.grid)


def _linear_tied(stage, v: Tensor) -> Tensor:
    return F.conv2d(v, stage.filters()[0], stride=stage.config.stride)


def _linear_competitive(stage, v: Tensor) -> Tensor:
    y = F.conv2d(v, stage.white["weight"], stride=stage.config.stride)  # (N, d, p, q)
    centre = y[:, :, y.shape[2] // 2, y.shape[3] // 2]
    return (centre @ stage.unit_weights().T)[:, :, None, None]


LINEAR = {"local": _linear_local, "tied": _linear_tied, "competitive": _linear_competitive}


def pixel_projections(stack: RBMStack, stage: int, layer: Layer, indices: Tensor) -> Tensor:
    """Pixel-space weights (U, C, S, S) of units ``indices`` in the linearised stack: the
    gradient of the linear map at 0, one backward pass for all units."""
    idx = torch.as_tensor(indices, device=stack.device, dtype=torch.long)
    C, S = stack.config.channels, stack.config.input_size
    x = torch.zeros(len(idx), C, S, S, device=stack.device, dtype=stack.dtype, requires_grad=True)
    out = linear_up_pass(stack, x, stage, layer).flatten(1)  # (U, n_units_layer)
    (g,) = torch.autograd.grad(out.gather(1, idx.unsqueeze(1)).sum(), x)
    return g.detach().cpu()
