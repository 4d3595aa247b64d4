"""One-pass CPU kernels for the elementwise optimiser steps of :mod:`models.optim`.

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

from models._random import HAVE_NUMBA, set_threads

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


if HAVE_NUMBA:
    from models._local_cpu import _sigmoid
    from models._random import uniform_at

    @njit(fastmath=True, error_model="numpy", cache=True)
    def _add_column_sums(bias, x0, xk, a0, ak):  # pragma: no cover - compiled
        """bias_j += a0 sum_r x0[r, j] - ak sum_r xk[r, j] (a bias step from two phases)."""
        zero = bias.dtype.type(0.0)
        for j in range(bias.shape[0]):
            s0, sk = zero, zero
            for r in range(x0.shape[0]):
                s0 += x0[r, j]
            for r in range(xk.shape[0]):
                sk += xk[r, j]
            bias[j] += a0 * s0 - ak * sk

    @njit(fastmath=True, error_model="numpy", cache=True)
    def pcd1_batches(X, starts, W, b, c, chain, lr, keys):  # pragma: no cover - compiled
        """Consecutive PCD-1 updates with momentum-free SGD (scikit-learn's BernoulliRBM rule).

        Batch ``i`` is ``X[starts[i]:starts[i + 1]]``; it uses the counter-based streams
        ``keys[2 i]`` (the chains' visible sample) and ``keys[2 i + 1]`` (their next hidden
        state). With ``v0`` the batch and ``h`` the chains (nk, n_hidden), all in place::

            p0 = sigmoid(v0 W^T + c);  vk ~ Bernoulli(sigmoid(h W + b))
            pk = sigmoid(vk W^T + c);  h  ~ Bernoulli(pk)
            W += lr (p0^T v0 / n0 - pk^T vk / nk);  b, c likewise with batch means

        One compiled loop over the mini-batches: at ~10 rows eager torch spends more time
        dispatching its ~13 operations than multiplying (Tieleman 2008 for PCD).
        """
        nh, nv = W.shape
        nk = chain.shape[0]
        one, zero = W.dtype.type(1.0), W.dtype.type(0.0)
        for i in range(starts.shape[0] - 1):
            v0 = np.ascontiguousarray(X[starts[i]:starts[i + 1]])
            n0 = v0.shape[0]
            p0 = np.dot(v0, W.T)  # (n0, nh)
            for r in range(n0):
                for j in range(nh):
                    p0[r, j] = _sigmoid(p0[r, j] + c[j])
            vk = np.dot(chain, W)  # (nk, nv)
            kv = keys[2 * i]
            for r in range(nk):
                for j in range(nv):
                    u = uniform_at(kv, r * nv + j)
                    vk[r, j] = one if u < _sigmoid(vk[r, j] + b[j]) else zero
            pk = np.dot(vk, W.T)  # (nk, nh)
            kh = keys[2 * i + 1]
            for r in range(nk):
                for j in range(nh):
                    q = _sigmoid(pk[r, j] + c[j])
                    pk[r, j] = q
                    chain[r, j] = one if uniform_at(kh, r * nh + j) < q else zero
            a0, ak = W.dtype.type(lr / n0), W.dtype.type(lr / nk)
            pos = np.dot(p0.T, v0)  # (nh, nv)
            neg = np.dot(pk.T, vk)
            for j in range(nh):
                for k in range(nv):
                    W[j, k] += a0 * pos[j, k] - ak * neg[j, k]
            _add_column_sums(b, v0, vk, a0, ak)
            _add_column_sums(c, p0, pk, a0, ak)
