"""Fast, counter-based uniform random numbers for the CPU sampling steps.

torch's CPU generator is a serial Mersenne Twister, a visible share of a CD step that draws a
sample for every hidden and visible unit. A counter-based generator (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3") makes number ``i`` a pure function of ``(key,
i)``: any thread may produce any element, so a fill is parallel and vectorisable yet gives the
same tensor for the same key whatever the thread count or schedule. The mixing function is
splitmix64 (Steele, Lea & Flood 2014, the seeding generator of Java's SplittableRandom and of
xoshiro), whose 64-bit output passes BigCrush; each 64-bit output gives two 24-bit floats.

The key is drawn from the caller's ``torch.Generator``, so a seed still determines every sample
and a generator shared by the torch path and this one advances consistently.

``uniform_at`` is an ``@njit`` function that other numba kernels (``models.kernels.local``)
inline to sample inside their loops without a separate pass over memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency; this keeps models importable
    numba = None

HAVE_NUMBA = numba is not None

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S40, _S8 = np.uint64(40), np.uint64(8)
_MASK24 = np.uint64(0xFFFFFF)
_ONE = np.uint64(1)
_INV24 = np.float32(1.0 / (1 << 24))


def draw_key(generator: torch.Generator | None) -> int:
    """A 63-bit key from ``generator`` (advancing it once), the seed of one counter-based fill."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


if HAVE_NUMBA:

    @njit(inline="always", cache=True)
    def uniform_at(key, i):  # pragma: no cover - compiled
        """Element ``i`` of the stream ``key``: a float32 in [0, 1) with 24 random bits.

        splitmix64 of ``key + (i // 2 + 1) * gamma``; even ``i`` take bits 40-63, odd ``i`` bits
        8-31 of the same output.
        """
        z = np.uint64(key) + (np.uint64(i >> 1) + _ONE) * _GAMMA
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        bits = (z >> _S40) if (i & 1) == 0 else ((z >> _S8) & _MASK24)
        return np.float32(bits) * _INV24

    @njit(parallel=True, fastmath=True, cache=True)
    def fill_uniform(out, key):  # pragma: no cover - compiled
        """out[i] = uniform_at(key, i) over a flat array."""
        for i in prange(out.shape[0]):
            out[i] = uniform_at(key, i)

    @njit(parallel=True, fastmath=True, cache=True)
    def fill_bernoulli(out, prob, key):  # pragma: no cover - compiled
        """out[i] = 1 if uniform_at(key, i) < prob[i] else 0 over flat arrays."""
        for i in prange(out.shape[0]):
            out[i] = 1.0 if uniform_at(key, i) < prob[i] else 0.0

    @njit(fastmath=True, cache=True)
    def fill_uniform_serial(out, key):  # pragma: no cover - compiled
        """fill_uniform on one thread (small arrays: no thread-pool launch)."""
        for i in range(out.shape[0]):
            out[i] = uniform_at(key, i)

    @njit(fastmath=True, cache=True)
    def fill_bernoulli_serial(out, prob, key):  # pragma: no cover - compiled
        """fill_bernoulli on one thread (small arrays: no thread-pool launch)."""
        for i in range(out.shape[0]):
            out[i] = 1.0 if uniform_at(key, i) < prob[i] else 0.0

# Below this many elements one thread beats waking the pool (a parallel launch costs more than
# the serial fill).
PARALLEL_MIN = 1 << 16
# Below this, torch's own generator is cheaper than the Python-side set-up of a numba call.
SERIAL_MIN = 1 << 12


def numba_ready(t: Tensor) -> bool:
    """True when a numba kernel can take ``t`` as it is: numba present, CPU, float32 or float64,
    contiguous (a counter-based fill here, the window means of :mod:`models.kernels.box_mean`)."""
    return (
        HAVE_NUMBA
        and t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and t.is_contiguous()
    )


def set_threads() -> None:
    """Match numba's thread count to torch's (both pools share the same cores).

    numba's default OpenMP threading layer and torch each bring an OpenMP runtime whose idle
    threads spin for a while. One process alone is fastest that way, but several busy processes
    on the same cores then slow each other down severely (benchmarks/ps.py). The
    parameter-server actors
    therefore run with one numba and one OpenMP thread (``cluster.ps.ONE_THREAD_ENV``); for other
    multi-process runs set ``NUMBA_NUM_THREADS=1`` (or ``OMP_WAIT_POLICY=passive``) in the
    environment.
    """
    if HAVE_NUMBA:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


@contextmanager
def matched_threads() -> Iterator[None]:
    """Run a numba kernel with :func:`set_threads`, then put torch's thread count back if
    numba's OpenMP start-up changed it (its first parallel call can)."""
    threads = torch.get_num_threads()
    set_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def uniform_(out: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``out`` with U[0, 1) numbers in place; counter-based and parallel on CPU.

    Falls back to ``out.uniform_(generator=generator)`` (CUDA, other dtypes, no numba).
    """
    if not numba_ready(out):
        return out.uniform_(generator=generator)
    flat = out.view(-1).numpy()
    if flat.shape[0] < PARALLEL_MIN:
        fill_uniform_serial(flat, draw_key(generator))
    else:
        set_threads()
        fill_uniform(flat, draw_key(generator))
    return out


def use_numba(out: Tensor, prob: Tensor) -> bool:
    """Whether :func:`bernoulli_` takes the counter-based path for these tensors."""
    return (
        numba_ready(out)
        and out.numel() >= SERIAL_MIN
        and prob.is_contiguous()
        and prob.dtype == out.dtype
        and prob.device == out.device
    )


def bernoulli_(
    out: Tensor, prob: Tensor, generator: torch.Generator | None = None, u: Tensor | None = None
) -> Tensor:
    """``out = (U < prob)`` as 0/1 in ``out``'s dtype (``out`` may be ``prob`` itself).

    Contiguous CPU tensors of at least ``SERIAL_MIN`` elements take one fused pass of the
    counter-based generator; the rest (CUDA, small, strided) draw ``U`` with ``torch.rand``
    (into ``u`` when given, a reusable buffer of ``prob``'s shape) and compare.
    """
    if prob.shape != out.shape:
        raise ValueError(f"prob shape {tuple(prob.shape)} != out shape {tuple(out.shape)}")
    if not use_numba(out, prob):
        if u is None:
            u = torch.rand(prob.shape, generator=generator, device=prob.device, dtype=prob.dtype)
        else:
            torch.rand(prob.shape, generator=generator, out=u)
        return torch.lt(u, prob, out=out)
    flat, pflat = out.view(-1).numpy(), prob.reshape(-1).numpy()
    if flat.shape[0] < PARALLEL_MIN:
        fill_bernoulli_serial(flat, pflat, draw_key(generator))
    else:
        set_threads()
        fill_bernoulli(flat, pflat, draw_key(generator))
    return out
