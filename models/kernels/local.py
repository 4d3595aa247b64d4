"""Fused CPU kernels (numba) for :class:`models.rbm.local.LocalRBM`: no patch matrices in memory.

Called by :class:`models.rbm.local_numba.NumbaLocal`, which owns the buffers they write into.

The torch path of a local CD-1 step unfolds every batch into ``(P, D, N)`` patch matrices
(8 x the image at 10x10 fields, stride 2), runs batched GEMMs of only a few rows per position
(shapes at which BLAS runs far below its peak), folds the down pass back
with strided adds and samples with torch's serial Mersenne Twister. These kernels read the
receptive fields straight out of a batch-last image ``(C, H, W, N)`` instead:

- :func:`up`: ``x[p, k, n] = c[p, k] + sum_d W[p, k, d] img[ch, y_p + dy, x_p + dx, n]``
  (fused unfold + GEMM, parallel over positions), with an epilogue that applies the sigmoid,
  scales by a constant (the gradient's ``1 / n`` or ``-1 / n``) and draws ``h ~ Bernoulli``.
- :func:`down`: the fold as a *gather*: each visible pixel sums ``W[p, k, d] h[p, k, :]`` over
  the positions ``p`` whose field covers it (parallel over image rows: no scatter, no races,
  the same sum order whatever the thread count), then adds the bias and applies the visible
  unit's mean function or draws its sample.
- :func:`gradient`: ``dW[p, k, d] = sum_n coef[p, k, n] img[ch, y_p + dy, x_p + dx, n]``, with
  ``coef = [p0 / n0, -pk / nk]`` and both phases side by side along ``n``.

The kernels compile with ``error_model="numpy"``: numba's default Python error model puts a
zero-division check on every float division, which keeps the sigmoid loops from vectorising.

Random numbers come from the counter-based generator of :mod:`models.kernels.counter_rng` (element
``i`` of a stream is a pure function of ``(key, i)``), so samples are identical for a given key
whatever the thread count or schedule. The inner loops run along ``n`` (contiguous), so LLVM
vectorises them; the up pass updates two accumulator rows from two field columns per sweep and
the down pass adds two maps per sweep, to cut loads and stores per multiply-add (wider tiles
lose: LLVM's runtime alias checks grow with the number of rows; see benchmarks/rbm.py).
"""

from __future__ import annotations

import math

import numpy as np

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic, overload

    from models.kernels.counter_rng import uniform_at
except ImportError:  # pragma: no cover - numba is a dependency; this keeps models importable
    njit = None

HAVE_NUMBA = njit is not None

# up/down epilogues
RAW, MEAN, SAMPLE, GAUSS_SAMPLE = 0, 1, 2, 3


def sigmoid(x):  # pragma: no cover - replaced by the overload inside compiled code
    return 1.0 / (1.0 + math.exp(-x))


if HAVE_NUMBA:

    @intrinsic
    def _int_bits_as_float32(typingctx, i):  # pragma: no cover - compiled
        """Reinterpret an int32's bits as a float32 (vectorisable 2^i for the fast exp)."""
        sig = types.float32(types.int32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    @overload(sigmoid, inline="always")
    def _sigmoid_impl(x):  # pragma: no cover - compiled
        """float32: 1 / (1 + 2^t) with a degree-7 polynomial for 2^frac (rel. error ~1e-7,
        vectorisable: no libm call); float64: libm exp (matches torch to rounding)."""
        if isinstance(x, types.Float) and x.bitwidth == 32:
            log2e = np.float32(-1.4426950408889634)
            c1, c2 = np.float32(0.6931471805599453), np.float32(0.2402265069591007)
            c3, c4 = np.float32(0.05550410866482158), np.float32(0.009618129107628477)
            c5, c6 = np.float32(0.0013333558146428443), np.float32(0.00015403530393381606)
            c7 = np.float32(1.525273380405984e-05)
            one, bias, ibias = np.float32(1.0), np.float32(127.5), np.int32(127)
            lo, hi = np.float32(-126.0), np.float32(126.0)
            shift = np.int32(23)

            def impl(x):
                t = min(max(x * log2e, lo), hi)  # exp(-x) = 2^t
                j = np.int32(t + bias)  # round(t) + 127 (t + 127.5 > 0: truncation floors)
                f = t - np.float32(j - ibias)  # [-0.5, 0.5] (integer bias: no reassociation)
                poly = c6 + f * c7
                poly = c4 + f * (c5 + f * poly)
                poly = one + f * (c1 + f * (c2 + f * (c3 + f * poly)))
                scale = _int_bits_as_float32(j << shift)  # 2^round(t)
                return one / (one + poly * scale)

            return impl

        def impl64(x):
            return 1.0 / (1.0 + math.exp(-x))

        return impl64

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def up(img, lo, hi, W, c, grid_w, s, r, out, scale, mode, key, hs):  # pragma: no cover
        """Hidden input of columns ``lo:hi`` of ``img`` into the same columns of ``out``.

        img (C, H, W, M) batch-last visibles; W (P, K, D); c (P, K); out (P, K, >= hi).
        mode RAW: ``out = x``; MEAN: ``out = scale * sigmoid(x)``; SAMPLE: as MEAN and also
        ``hs[p, k, n - lo] = u < sigmoid(x)`` with ``u = uniform_at(key, (p K + k) m + n - lo)``,
        ``m = hi - lo``.
        """
        C = img.shape[0]
        P, K, D = W.shape
        m = hi - lo
        for p in prange(P):
            py = (p // grid_w) * s
            px = (p % grid_w) * s
            # rows are sliced to lo:hi once, so every inner loop runs n from 0 (an index that
            # numba cannot prove non-negative keeps its wraparound check and the loop scalar)
            for k in range(K):
                ck = c[p, k]
                ok = out[p, k, lo:hi]
                for n in range(m):
                    ok[n] = ck
            for ch in range(C):
                for dy in range(r):
                    d0 = (ch * r + dy) * r
                    dx = 0
                    while dx + 1 < r:  # 2 field columns x 2 maps per sweep
                        r0 = img[ch, py + dy, px + dx, lo:hi]
                        r1 = img[ch, py + dy, px + dx + 1, lo:hi]
                        k = 0
                        while k + 1 < K:
                            w00, w01 = W[p, k, d0 + dx], W[p, k, d0 + dx + 1]
                            w10, w11 = W[p, k + 1, d0 + dx], W[p, k + 1, d0 + dx + 1]
                            o0 = out[p, k, lo:hi]
                            o1 = out[p, k + 1, lo:hi]
                            for n in range(m):
                                x0 = r0[n]
                                x1 = r1[n]
                                o0[n] += w00 * x0 + w01 * x1
                                o1[n] += w10 * x0 + w11 * x1
                            k += 2
                        if k < K:
                            w0, w1 = W[p, k, d0 + dx], W[p, k, d0 + dx + 1]
                            ok = out[p, k, lo:hi]
                            for n in range(m):
                                ok[n] += w0 * r0[n] + w1 * r1[n]
                        dx += 2
                    if dx < r:
                        r0 = img[ch, py + dy, px + dx, lo:hi]
                        for k in range(K):
                            w0 = W[p, k, d0 + dx]
                            ok = out[p, k, lo:hi]
                            for n in range(m):
                                ok[n] += w0 * r0[n]
            if mode == MEAN:
                for k in range(K):
                    ok = out[p, k, lo:hi]
                    for n in range(m):
                        ok[n] = scale * sigmoid(ok[n])
            elif mode == SAMPLE:
                for k in range(K):
                    ok = out[p, k, lo:hi]
                    hk = hs[p, k]
                    base = (p * K + k) * m
                    for n in range(m):
                        prob = sigmoid(ok[n])
                        hk[n] = 1.0 if uniform_at(key, base + n) < prob else 0.0
                        ok[n] = scale * prob

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def down(hs, hlo, m, W, b, grid_h, grid_w, s, r, out, olo, mode, key):  # pragma: no cover
        """Visible input ``b + fold(h W)`` of ``m`` columns, gathered pixel by pixel.

        hs (P, K, >= hlo + m) hidden values (columns ``hlo:hlo+m``); W (P, K, D); b (C, H, W);
        out (C, H, W, >= olo + m) receives columns ``olo:olo+m``.
        mode RAW: the input; MEAN: its sigmoid; SAMPLE: Bernoulli(sigmoid) with
        ``u = uniform_at(key, ((ch H + y) W + x) m + n)``; GAUSS_SAMPLE: input + N(0, 1) noise
        (Box-Muller: uniforms i, i + 1 (i even) give the noise of columns n, n + 1).
        """
        C, H, Wd = b.shape
        P, K, D = W.shape
        two_pi = np.float32(2.0 * np.pi)
        minus_two, one = np.float32(-2.0), np.float32(1.0)
        for cy in prange(C * H):
            ch = cy // H
            y = cy - ch * H
            py_lo = max(0, -((r - 1 - y) // s))  # ceil((y - r + 1) / s)
            py_hi = min(grid_h - 1, y // s)
            for x in range(Wd):
                orow = out[ch, y, x, olo:olo + m]  # sliced: inner loops index from 0
                bb = b[ch, y, x]
                for n in range(m):
                    orow[n] = bb
                px_lo = max(0, -((r - 1 - x) // s))
                px_hi = min(grid_w - 1, x // s)
                for py in range(py_lo, py_hi + 1):
                    drow = (ch * r + y - py * s) * r + x
                    for px in range(px_lo, px_hi + 1):
                        p = py * grid_w + px
                        d = drow - px * s
                        k = 0
                        while k + 1 < K:  # two maps per sweep over the accumulator row
                            w0 = W[p, k, d]
                            w1 = W[p, k + 1, d]
                            h0 = hs[p, k, hlo:hlo + m]
                            h1 = hs[p, k + 1, hlo:hlo + m]
                            for n in range(m):
                                orow[n] += w0 * h0[n] + w1 * h1[n]
                            k += 2
                        if k < K:
                            w0 = W[p, k, d]
                            h0 = hs[p, k, hlo:hlo + m]
                            for n in range(m):
                                orow[n] += w0 * h0[n]
                if mode == MEAN:
                    for n in range(m):
                        orow[n] = sigmoid(orow[n])
                elif mode == SAMPLE:
                    base = ((ch * H + y) * Wd + x) * m
                    for n in range(m):
                        prob = sigmoid(orow[n])
                        orow[n] = 1.0 if uniform_at(key, base + n) < prob else 0.0
                elif mode == GAUSS_SAMPLE:
                    # Box-Muller in float32, both outputs of a pair of uniforms used
                    base = ((ch * H + y) * Wd + x) * (m + (m & 1))  # even row length: no overlap
                    for n in range(0, m, 2):
                        u1 = uniform_at(key, base + n)
                        u2 = uniform_at(key, base + n + 1)
                        rad = math.sqrt(minus_two * math.log(one - u1))
                        ang = two_pi * u2
                        orow[n] += rad * math.cos(ang)
                        if n + 1 < m:
                            orow[n + 1] += rad * math.sin(ang)

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def gradient(img, coef, grid_w, s, r, dW, dc):  # pragma: no cover - compiled
        """dW[p, k, d] = sum_n coef[p, k, n] img[ch, y_p + dy, x_p + dx, n]; dc = sum_n coef.

        img (C, H, W, M); coef (P, K, M) (the scaled hidden probabilities of both phases);
        dW (P, K, D) and dc (P, K) are overwritten.
        """
        C = img.shape[0]
        M = img.shape[3]
        P, K, D = dW.shape
        zero = dW.dtype.type(0.0)  # accumulate in the arrays' precision
        for p in prange(P):
            py = (p // grid_w) * s
            px = (p % grid_w) * s
            cp = coef[p]
            for k in range(K):
                acc = zero
                ck = cp[k]
                for n in range(M):
                    acc += ck[n]
                dc[p, k] = acc
            for ch in range(C):
                for dy in range(r):
                    irow = img[ch, py + dy]
                    d0 = (ch * r + dy) * r
                    for dx in range(r):
                        row = irow[px + dx]
                        d = d0 + dx
                        k = 0
                        while k + 3 < K:  # four dot products per pass over the pixel row
                            c0, c1, c2, c3 = cp[k], cp[k + 1], cp[k + 2], cp[k + 3]
                            a0 = a1 = a2 = a3 = zero
                            for n in range(M):
                                v = row[n]
                                a0 += c0[n] * v
                                a1 += c1[n] * v
                                a2 += c2[n] * v
                                a3 += c3[n] * v
                            dW[p, k, d] = a0
                            dW[p, k + 1, d] = a1
                            dW[p, k + 2, d] = a2
                            dW[p, k + 3, d] = a3
                            k += 4
                        while k < K:
                            c0 = cp[k]
                            a0 = zero
                            for n in range(M):
                                a0 += c0[n] * row[n]
                            dW[p, k, d] = a0
                            k += 1

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def load_batch(v, img):  # pragma: no cover - compiled
        """img[ch, y, x, n] = v[n, ch, y, x] for the first N columns of img (C, H, W, >= N)."""
        N, C, H, Wd = v.shape
        for cy in prange(C * H):
            ch = cy // H
            y = cy - ch * H
            for x in range(Wd):
                row = img[ch, y, x]
                for n in range(N):
                    row[n] = v[n, ch, y, x]

    @njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
    def visible_gradient(img, n0, db):  # pragma: no cover - compiled
        """db = mean of img's columns :n0 - mean of its columns n0: (per pixel); db (C, H, W)."""
        C, H, Wd, M = img.shape
        a0 = 1.0 / n0
        ak = 1.0 / (M - n0)
        zero = db.dtype.type(0.0)
        for cy in prange(C * H):
            ch = cy // H
            y = cy - ch * H
            for x in range(Wd):
                row = img[ch, y, x]
                s0 = zero
                sk = zero
                for n in range(n0):
                    s0 += row[n]
                for n in range(n0, M):
                    sk += row[n]
                db[ch, y, x] = s0 * a0 - sk * ak
