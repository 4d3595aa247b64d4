"""Ray for a one-off job of this process (the dataset scans of ``catneuron visualize``): attach
to the Ray this process already runs or ``RAY_ADDRESS`` names, or start a local one
(:func:`pipeline.pool.ensure_ray`), and shut down only what was started here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_ray(job: Callable[[int], T], num_cpus: int | None = None) -> T:
    """``job(n_cpus)`` with Ray up, where ``n_cpus`` is the cluster's CPU count (how many
    single-threaded actors it can run at once); a Ray started here is shut down afterwards,
    even when ``job`` raises. ``num_cpus``: a local Ray's CPUs (default every core)."""
    import ray  # here, not at import: ``catneuron visualize --help`` starts without Ray

    from pipeline.pool import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(num_cpus)
    try:
        return job(int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


__all__ = ["with_ray"]
