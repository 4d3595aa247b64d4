"""One-pass CPU kernels for the elementwise optimiser steps of :mod:`models.rbm.optim`.

torch's eager momentum step is four passes over the parameters (``vel.mul_``, ``add_`` of the
update, ``add_`` of the weight decay, ``p.add_``), each reading and writing a 4 MB array for a
1024 x 1024 RBM; the same step in one parallel numba loop reads ``p``, ``vel`` and ``g`` once and
writes ``p`` and ``vel`` once. The parameter-server shards run the same code on their slices.

Arithmetic follows the torch path operation by operation, in the parameters' dtype (scalars are
cast to it first), so both paths agree to rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.kernels.counter_rng import HAVE_NUMBA, set_threads

if HAVE_NUMBA:
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def _sgd(p, vel, g, momentum, lr, neg_lr_decay):  # pragma: no cover - compiled
        """vel = momentum vel + lr g - lr decay p;  p += vel (flat arrays)."""
        for i in prange(p.shape[0]):
            v = momentum * vel[i] + lr * g[i]
            v = v + neg_lr_decay * p[i]
            vel[i] = v
            p[i] = p[i] + v

    @njit(parallel=True, cache=True)
    def _adagrad(p, acc, g, lr, decay, eps):  # pragma: no cover - compiled
        """g' = g - decay p;  acc += g'^2;  p += lr g' / (sqrt(acc) + eps) (flat arrays)."""
        for i in prange(p.shape[0]):
            gi = g[i] - decay * p[i]
            a = acc[i] + gi * gi
            acc[i] = a
            p[i] = p[i] + lr * (gi / (np.sqrt(a) + eps))

# Smaller tensors (biases) stay on the torch path: a thread-pool launch costs more than it saves.
FUSED_MIN = 1 << 15


def usable(*tensors: Tensor) -> bool:
    """True when the fused kernels apply: numba, CPU, one float dtype, contiguous, large."""
    first = tensors[0]
    return (
        HAVE_NUMBA
        and first.numel() >= FUSED_MIN
        and first.dtype in (torch.float32, torch.float64)
        and all(
            t.device.type == "cpu" and t.dtype == first.dtype and t.is_contiguous()
            and t.shape == first.shape
            for t in tensors
        )
    )


def _flat(t: Tensor) -> np.ndarray:
    """Zero-copy flat numpy view of a contiguous CPU tensor."""
    return t.detach().view(-1).numpy()


def sgd_(p: Tensor, vel: Tensor, g: Tensor, momentum: float, lr: float, decay: float) -> None:
    """Momentum SGD step in one pass, in place on ``p`` and ``vel`` (see ``usable``)."""
    cast = np.float32 if p.dtype == torch.float32 else np.float64
    set_threads()
    _sgd(_flat(p), _flat(vel), _flat(g), cast(momentum), cast(lr), cast(-lr * decay))


def adagrad_(p: Tensor, acc: Tensor, g: Tensor, lr: float, decay: float, eps: float) -> None:
    """Adagrad step in one pass, in place on ``p`` and ``acc`` (see ``usable``)."""
    cast = np.float32 if p.dtype == torch.float32 else np.float64
    set_threads()
    _adagrad(_flat(p), _flat(acc), _flat(g), cast(lr), cast(decay), cast(eps))
