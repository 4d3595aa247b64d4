"""Elementwise optimiser shared by single-process training and parameter-server shards.

Every rule here is elementwise (momentum SGD with L2 weight decay, Hinton 2010 "A Practical
Guide to Training Restricted Boltzmann Machines" sections 9-10; Adagrad, Duchi et al. 2011, as
DistBelief's Downpour SGD ran it per shard, Dean et al. 2012). A parameter server that holds a
slice of ``W`` therefore applies exactly what a single process would apply to that slice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from models.kernels import optim as optim_kernels


@dataclass(frozen=True)
class UpdateConfig:
    """How an update (an ascent direction) turns into a parameter change.

    Attributes
    ----------
    learning_rate : step size (Hinton's guide: 0.01-0.1 for binary visibles, 1-2 orders of
        magnitude lower for Gaussian visibles).
    momentum : final momentum (0.9 in the guide).
    initial_momentum : momentum during the first ``momentum_switch_step`` steps (0.5).
    momentum_switch_step : number of ``step`` calls at ``initial_momentum`` (the guide switches
        after about 5 epochs; 500 steps is 5 epochs of 100 mini-batches).
    weight_decay : L2 coefficient, applied only to the parameters named in ``decay_names``.
    method : ``"sgd"`` (momentum SGD) or ``"adagrad"`` (no momentum).
    adagrad_eps : added to the root of the accumulated squares.
    anneal_steps : over the first ``anneal_steps`` ``step`` calls the learning rate falls
        linearly from ``learning_rate`` to ``anneal_to * learning_rate`` and stays there (0 = a
        constant rate). Online k-means and its RBM form move their units by a fixed share of
        each batch's mean; a falling rate lets them settle instead of jittering around it
        (Bottou & Bengio 1995, "Convergence properties of the k-means algorithms").
    anneal_to : the final rate as a share of ``learning_rate``, in (0, 1].
    """

    learning_rate: float = 0.01
    momentum: float = 0.9
    initial_momentum: float = 0.5
    momentum_switch_step: int = 500
    weight_decay: float = 2e-4
    method: Literal["sgd", "adagrad"] = "sgd"
    adagrad_eps: float = 1e-8
    anneal_steps: int = 0
    anneal_to: float = 0.1

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0")
        for name in ("momentum", "initial_momentum"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if self.momentum_switch_step < 0:
            raise ValueError(f"momentum_switch_step={self.momentum_switch_step} must be >= 0")
        if self.method not in ("sgd", "adagrad"):
            raise ValueError(f"method={self.method!r} must be 'sgd' or 'adagrad'")
        if not self.adagrad_eps > 0:
            raise ValueError(f"adagrad_eps={self.adagrad_eps} must be > 0")
        if self.anneal_steps < 0:
            raise ValueError(f"anneal_steps={self.anneal_steps} must be >= 0")
        if not 0.0 < self.anneal_to <= 1.0:
            raise ValueError(f"anneal_to={self.anneal_to} must be in (0, 1]")


class ParameterUpdater:
    """Elementwise optimiser: works on any slice of the parameters (a PS shard holds slices).

    ``step(params, update)`` changes ``params`` in place. ``update`` is the ascent direction
    (the CD estimate of the log-likelihood gradient), so for momentum SGD::

        velocity = momentum * velocity + learning_rate * (update - weight_decay * param)
        param   += velocity

    and for Adagrad::

        accum += g ** 2;  param += learning_rate * g / (sqrt(accum) + eps)

    with ``g = update - weight_decay * param``. State (velocity / accumulators) is created
    lazily with the shape, dtype and device of the tensors given, so a shard that holds rows
    ``a:b`` of ``W`` gets ``(b - a, ...)``-shaped state.

    Parameters
    ----------
    config : the rule and its hyperparameters.
    decay_names : names of parameters that get weight decay (weights, not biases).
    """

    def __init__(self, config: UpdateConfig | None = None, decay_names: Iterable[str] = ("W",)):
        self.config = config if config is not None else UpdateConfig()
        self.decay_names = frozenset(decay_names)
        self.step_count = 0
        self.velocity: dict[str, Tensor] = {}
        self.accum: dict[str, Tensor] = {}

    def current_momentum(self) -> float:
        """Momentum used by the next ``step`` (0.5 then 0.9 in Hinton's schedule)."""
        cfg = self.config
        if self.step_count < cfg.momentum_switch_step:
            return cfg.initial_momentum
        return cfg.momentum

    def current_learning_rate(self) -> float:
        """Learning rate of the next ``step``: ``lr (1 - (1 - anneal_to) min(t, T) / T)`` for
        ``T = anneal_steps > 0`` after ``t`` steps; ``lr`` when ``T = 0``."""
        cfg = self.config
        if cfg.anneal_steps == 0:
            return cfg.learning_rate
        done = min(self.step_count, cfg.anneal_steps) / cfg.anneal_steps
        return cfg.learning_rate * (1.0 - (1.0 - cfg.anneal_to) * done)

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], update: dict[str, Tensor]) -> None:
        """Apply ``update`` (ascent direction) to ``params`` in place.

        Raises
        ------
        KeyError : ``update`` names a parameter that ``params`` lacks.
        ValueError : an update's shape differs from its parameter's.
        """
        cfg = self.config
        lr = self.current_learning_rate()
        momentum = self.current_momentum()
        for name, g in update.items():
            if name not in params:
                raise KeyError(f"update has {name!r} but params only has {sorted(params)}")
            p = params[name]
            if g.shape != p.shape:
                raise ValueError(
                    f"update[{name!r}] has shape {tuple(g.shape)}, param has {tuple(p.shape)}"
                )
            g = g.to(device=p.device, dtype=p.dtype)
            decay = cfg.weight_decay if name in self.decay_names else 0.0
            if cfg.method == "sgd":
                vel = self.velocity.get(name)
                if vel is None or vel.shape != p.shape:
                    vel = torch.zeros_like(p)
                    self.velocity[name] = vel
                if optim_kernels.usable(p, vel, g):
                    optim_kernels.sgd_(p, vel, g, momentum, lr, decay)  # one pass, same arithmetic
                    continue
                vel.mul_(momentum).add_(g, alpha=lr)
                if decay:
                    vel.add_(p, alpha=-lr * decay)
                p.add_(vel)
            else:
                acc = self.accum.get(name)
                if acc is None or acc.shape != p.shape:
                    acc = torch.zeros_like(p)
                    self.accum[name] = acc
                if optim_kernels.usable(p, acc, g):
                    optim_kernels.adagrad_(p, acc, g, lr, decay, cfg.adagrad_eps)
                    continue
                if decay:
                    g = g - decay * p
                acc.addcmul_(g, g)
                p.addcdiv_(g, acc.sqrt().add_(cfg.adagrad_eps), value=lr)
        self.step_count += 1

    def state_dict(self) -> dict:
        """Step counter and per-parameter state (tensors are not copied)."""
        return {
            "step_count": self.step_count,
            "velocity": dict(self.velocity),
            "accum": dict(self.accum),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (tensors are cloned)."""
        self.step_count = int(state["step_count"])
        self.velocity = {k: v.clone() for k, v in state.get("velocity", {}).items()}
        self.accum = {k: v.clone() for k, v in state.get("accum", {}).items()}
