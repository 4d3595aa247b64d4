"""Scoped CPU thread count for small, latency-bound work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the old count (None: no-op).

    Tiny matmuls (a mini-batch of 10 x 64 x 100) are slower with more than one thread: the
    thread hand-off costs more than the product.
    """
    if n is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
