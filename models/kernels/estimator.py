"""A compiled PCD-1 loop for :class:`models.rbm.estimator.BernoulliRBMEstimator` (numba).

scikit-learn's ``BernoulliRBM`` rule (PCD-1, momentum-free SGD) over many mini-batches in one
call: at ~10 rows per batch eager torch spends more time dispatching its operations than
multiplying, so the whole loop is compiled. Random numbers come from the counter-based
generator of :mod:`models.kernels.counter_rng`.
"""

from __future__ import annotations

import numpy as np

from models.kernels.counter_rng import HAVE_NUMBA

if HAVE_NUMBA:
    from numba import njit

    from models.kernels.counter_rng import uniform_at
    from models.kernels.local import sigmoid

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
                    p0[r, j] = sigmoid(p0[r, j] + c[j])
            vk = np.dot(chain, W)  # (nk, nv)
            kv = keys[2 * i]
            for r in range(nk):
                for j in range(nv):
                    u = uniform_at(kv, r * nv + j)
                    vk[r, j] = one if u < sigmoid(vk[r, j] + b[j]) else zero
            pk = np.dot(vk, W.T)  # (nk, nh)
            kh = keys[2 * i + 1]
            for r in range(nk):
                for j in range(nh):
                    q = sigmoid(pk[r, j] + c[j])
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
