"""Optimal stimulus of a unit: the unit-norm input that maximises its activation.

Le et al. (2012, section 4.3) visualise a neuron by ``x* = argmax_x f(x)`` subject to
``||x||_2 = 1``, solved numerically. Here by projected (Riemannian) gradient ascent on the sphere,
from several random starts, on the deterministic up-pass (:func:`models.neurons.units.up_pass`)::

    g   = grad f(x) - (grad f(x) . x) x          (tangent part of the gradient)
    x  <- normalise(x + eta_t g / ||g||)          (eta_t decays linearly to 0)

The normalised step moves ``x`` by about ``eta_t`` radians whatever the gradient's scale (sigmoid
units deep in a stack have tiny gradients), and the decay lets it settle on the optimum. Many
units are searched at once: each (unit, start) pair is one image of the batch, and the images of
a batch do not interact in the up-pass, so the summed objective's gradient is each image's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from models.neurons.units import Layer, up_pass
from models.stack import RBMStack

Objective = Callable[[Tensor], Tensor]  # x (U, S, *shape) -> activations (U, S)


@dataclass(frozen=True)
class StimulusConfig:
    """Search settings: ``n_starts`` random starts per unit, ``n_steps`` ascent steps, initial
    step ``step_size`` (radians on the unit sphere)."""

    n_starts: int = 4
    n_steps: int = 60
    step_size: float = 0.5

    def __post_init__(self) -> None:
        if self.n_starts < 1 or self.n_steps < 0 or not self.step_size > 0:
            raise ValueError(f"{self}: n_starts >= 1, n_steps >= 0 and step_size > 0 required")


def normalise(x: Tensor, n_dims: int) -> Tensor:
    """x / ||x||_2 over the last ``n_dims`` dimensions (0 where x is 0). No floor on the norm:
    gradients of saturated sigmoids are tiny but still point the right way."""
    dims = tuple(range(-n_dims, 0))
    norm = x.square().sum(dims, keepdim=True).sqrt()
    return torch.where(norm > 0, x / torch.where(norm > 0, norm, 1.0), 0.0)


def _ascent_step(x: Tensor, g: Tensor, eta: float, n_dims: int) -> Tensor:
    """x <- normalise(x + eta g_t / ||g_t||), g_t the tangent part of g at x."""
    dims = tuple(range(-n_dims, 0))
    g = g - (g * x).sum(dims, keepdim=True) * x
    return normalise(x + eta * normalise(g, n_dims), n_dims)


def optimal_stimuli(
    objective: Objective,
    n_units: int,
    shape: tuple[int, ...],
    config: StimulusConfig,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Best unit-norm input per unit and its activation.

    Parameters
    ----------
    objective : maps inputs (U, S, *shape) to activations (U, S), unit u's on row u.
    n_units, shape : U units; inputs of ``shape`` (e.g. (C, H, W)).
    config : starts, steps, step size.
    generator : draws the random starts (on ``device``).

    Returns
    -------
    x : (U, *shape), ``||x[u]||_2 = 1``.
    activation : (U,) the objective at ``x`` (best of the starts).
    """
    n = len(shape)
    x = torch.randn((n_units, config.n_starts, *shape), generator=generator, device=device,
                    dtype=dtype)
    x = normalise(x, n)
    for t in range(config.n_steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(x).sum(), x)
        eta = config.step_size * (1.0 - t / config.n_steps)
        x = _ascent_step(x.detach(), g, eta, n)
    with torch.no_grad():
        a = objective(x)  # (U, S)
        best = a.argmax(1)
        rows = torch.arange(n_units, device=a.device)
        return x[rows, best], a[rows, best]


def unit_objective(stack: RBMStack, stage: int, layer: Layer, indices: Tensor) -> Objective:
    """Objective for units ``indices`` (U,) of one layer: activation of unit u on images x[u].
    A stage that gives each input its own unit's pooled response (``own_unit_responses``: a
    competitive stage, through each input's best window alone) is asked for that; any other
    layer is read from the whole up-pass (:func:`up_pass_objective`)."""
    idx = torch.as_tensor(indices, device=stack.device, dtype=torch.long)
    own = getattr(stack.stages[stage], "own_unit_responses", None)
    if own is None or layer != "pooled":
        return up_pass_objective(stack, stage, layer, idx)

    def best_window(x: Tensor) -> Tensor:
        U, S = x.shape[:2]
        frames = x.flatten(0, 1).to(device=stack.device, dtype=stack.dtype)
        return own(stack.differentiable_reads(frames, stage),
                   idx.repeat_interleave(S)).view(U, S)

    return best_window


def up_pass_objective(stack: RBMStack, stage: int, layer: Layer, indices: Tensor) -> Objective:
    """Unit ``indices[u]``'s activation on images ``x[u]``, gathered from the whole
    :func:`up_pass` (every unit of the layer computed)."""
    idx = torch.as_tensor(indices, device=stack.device, dtype=torch.long)

    def f(x: Tensor) -> Tensor:
        U, S = x.shape[:2]
        out = up_pass(stack, x.flatten(0, 1), stage, layer).flatten(1)  # (U S, n_units_layer)
        return out.gather(1, idx.repeat_interleave(S).unsqueeze(1)).view(U, S)

    return f
