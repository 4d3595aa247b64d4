"""Ray for a one-off job of this process (the dataset scans of ``catneuron visualize``), started
only if the job asks for it: a scan small enough for the driver alone
(:func:`cluster.topk.actors_pay`) then costs no Ray start-up at all."""

from __future__ import annotations


class RayOnDemand:
    """A context: :meth:`actors` attaches to the Ray this process already runs or
    ``RAY_ADDRESS`` names, or starts a local one (:func:`pipeline.pool.ensure_ray`); a Ray
    started here is shut down on exit, even when the job raised.

    ``num_cpus``: a local Ray's CPUs (default every core)."""

    def __init__(self, num_cpus: int | None = None) -> None:
        self.num_cpus = num_cpus
        self.started = False

    def actors(self, requested: int = 0) -> int:
        """Bring Ray up; ``requested`` actors, or with 0 the cluster's CPU count (how many
        single-threaded actors it can run at once)."""
        import ray  # here, not at import: ``catneuron visualize --help`` starts without Ray

        from pipeline.pool import ensure_ray

        if not ray.is_initialized():
            ensure_ray(self.num_cpus)
            self.started = True
        return requested or int(ray.cluster_resources().get("CPU", 1))

    def __enter__(self) -> RayOnDemand:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


__all__ = ["RayOnDemand"]
