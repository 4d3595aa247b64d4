"""Keep freed memory for reuse: glibc's ``malloc`` tuned so large tensors are not page-faulted in
on every allocation.

By default glibc serves an allocation of more than ``M_MMAP_THRESHOLD`` bytes (128 KiB, raised
dynamically up to 32 MiB) with a fresh ``mmap`` and gives it back with ``munmap`` when it is
freed, and it returns the top of the heap to the system once more than ``M_TRIM_THRESHOLD`` is
free there. A torch CPU op allocates its output anew on every call, so the output of, say, a
convolution of 64 frames (27 MiB) is mapped, touched page by page (one minor page fault per
4 KiB, each zeroed by the kernel) and unmapped again, every step: on a 2-core machine the faults
cost several times the arithmetic (``benchmarks/allocator.py``).

:func:`keep_freed_memory` raises both thresholds (``mallopt``), so blocks below
:data:`MMAP_THRESHOLD` come from the heap and a freed block is reused by the next allocation of
its size without a fault. The price is that a process keeps its peak heap (up to
:data:`TRIM_THRESHOLD` of free memory at its top) instead of handing it back between steps.
Values are unchanged: only where the bytes live changes.

It runs when :mod:`models` is imported, so every process that computes with this package (the
jobs, Ray workers and parameter-server shards, benchmarks and their references) allocates the
same way. ``CATNEURON_MALLOC=default`` leaves glibc's own behaviour; on a C library other than
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 1 << 30
"""Allocations below this many bytes (1 GiB) come from the heap, not a fresh ``mmap``."""
TRIM_THRESHOLD = 1 << 31
"""Free memory at the top of the heap kept for reuse (2 GiB) before glibc returns it."""
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
ENV = "CATNEURON_MALLOC"


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; returns whether both were set
    (False with ``CATNEURON_MALLOC=default``, off glibc, or if ``mallopt`` refused)."""
    if os.environ.get(ENV, "").strip().lower() == "default":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
