"""A pool of Ray actors that run :func:`pipeline.video_job.ingest_video` (the only Ray module
in ``pipeline/``).

Each actor is a thin shell around the plain decode-and-write function. Sizing (figures in the
README): by default one actor per CPU of the Ray cluster, each *requesting* only
``ACTOR_NUM_CPUS = 0.5`` logical CPU. The actors still use a whole core each (Ray does not pin
CPUs), but on a 2-CPU machine one logical CPU stays free, so Ray's own tasks (``ray.data``,
a trainer started alongside) are never starved of scheduling slots. OpenCV's own thread pool is
set to one thread per actor so ``n`` actors use ``n`` cores, not ``n * cores`` threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterable, Iterator

import ray

from pipeline.video_job import VideoJob, VideoResult, ingest_video

ACTOR_NUM_CPUS = 0.5

# Ray's system settings for a local Ray (one machine); an environment variable ``RAY_<name>``
# keeps its own value. A task's return of up to 1 MiB (Ray's default: 100 KiB) travels in the
# task's reply and its owner's memory instead of the shared-memory object store: cheaper on one
# machine for the parameters and updates a synchronous step passes (a competitive stage's
# 256 x 192 units are 197 KB). A cluster keeps Ray's default, so that values go from node to
# node directly, not through the driver that owns them.
LOCAL_RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": 1 << 20}


class _DecodeActor:
    """Thin Ray actor: one OpenCV thread, runs :func:`ingest_video`."""

    def __init__(self) -> None:
        import cv2

        cv2.setNumThreads(1)

    def run(self, job: VideoJob) -> VideoResult:
        return ingest_video(job)

    def ready(self) -> bool:
        return True


class RayUnreachable(ConnectionError):
    """The Ray address given (``RAY_ADDRESS`` or a flag) does not answer."""


def ensure_ray(num_cpus: int | None = None, address: str | None = None,
               connect_timeout_s: float = 5.0) -> None:
    """Connect this process to Ray, once.

    With an address (``address``, else ``RAY_ADDRESS``; ``host:port`` of a cluster's head, or
    ``ray://host:port``), join that cluster; one that does not accept a connection within
    ``connect_timeout_s`` raises :class:`RayUnreachable` (one line, naming the address and its
    origin) instead of waiting for minutes. ``num_cpus`` is then ignored.

    Without one, start this process's own local Ray (``num_cpus``, default all CPUs; no
    dashboard), bound to 127.0.0.1 only (GCS, raylet, workers and agents listen on the loopback
    interface), and never join a cluster left running on the machine by ``ray start``
    (``address="local"``), with :data:`LOCAL_RAY_SYSTEM_CONFIG` (:func:`start_local_ray`). Token
    authentication stays on; only its start-up notice is hidden.
    """
    if ray.is_initialized():
        return
    origin = "--ray-address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    with _token_notice_hidden():
        if address and address not in ("local", "auto"):
            _check_answers(address, origin, connect_timeout_s)
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        elif address == "auto":
            ray.init(address="auto", log_to_driver=False, configure_logging=False)
        else:
            start_local_ray(num_cpus)


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start this process's own Ray on this machine: bound to 127.0.0.1 (:func:`loopback_only`),
    never joining another cluster (``address="local"``), no dashboard, with
    :func:`local_ray_settings`."""
    loopback_only()
    system = {k: v for k, v in LOCAL_RAY_SYSTEM_CONFIG.items() if f"RAY_{k}" not in os.environ}
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _system_config=system)


def local_ray_settings() -> dict[str, int]:
    """The settings of :data:`LOCAL_RAY_SYSTEM_CONFIG` that a Ray from :func:`start_local_ray`
    runs with: an exported ``RAY_<name>`` (Ray reads it itself), else the value there. The
    benchmarks record them beside their figures."""
    return {k: int(os.environ.get(f"RAY_{k}", v)) for k, v in LOCAL_RAY_SYSTEM_CONFIG.items()}


def _check_answers(address: str, origin: str, timeout_s: float) -> None:
    """RayUnreachable unless a TCP connection to ``address``'s host:port opens in time."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachable(f"Ray address {address!r} (from {origin}) is not host:port or "
                             "ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        drop = "drop --ray-address" if origin == "--ray-address" else "unset RAY_ADDRESS"
        raise RayUnreachable(
            f"Ray at {address} (from {origin}) does not answer ({exc.strerror or exc}): start "
            f"that cluster, or {drop} to run on a local Ray of this process") from None


def loopback_only() -> None:
    """Make the next local ``ray.init`` advertise and bind 127.0.0.1 (what Ray does by default
    on macOS and Windows, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); the setting is read by
    this process when ``ray.init`` picks the node address and inherited by Ray's processes."""
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


class _DropTokenNotice(logging.Filter):
    """Drops Ray's "Token authentication is enabled ..." start-up notice (auth stays on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def _token_notice_hidden():
    """Hide the token-auth notice Ray logs on every ``ray.init`` while the block runs."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DropTokenNotice()
    log.addFilter(notice)
    try:
        yield
    finally:
        log.removeFilter(notice)


def default_workers() -> int:
    """One decode actor per CPU of the connected Ray cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class DecodePool:
    """``n_workers`` decode actors; :meth:`map_unordered` yields results as they complete.

    Parameters
    ----------
    n_workers:
        Number of actors (``None``: :func:`default_workers`). Requires ``ray.init`` first.
    num_cpus:
        Logical CPUs each actor requests (fractional is fine). If fewer actors fit in the
        cluster's free CPUs, the pool shrinks to what fits (with a warning) instead of waiting.
    start_timeout_s:
        Seconds to wait for the actors to start before :class:`RuntimeError`.
    actor_class:
        The actor body (default: the OpenCV decode actor); tests inject failures through it.

    An actor that dies (e.g. a decoder crash on a hostile file) fails only its video, with a
    reason, and is replaced.
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        num_cpus: float = ACTOR_NUM_CPUS,
        start_timeout_s: float = 120.0,
        actor_class: type = _DecodeActor,
    ) -> None:
        if not ray.is_initialized():
            raise RuntimeError("DecodePool needs Ray: call ray.init() first")
        self.n_workers = default_workers() if n_workers is None else n_workers
        if self.n_workers < 1:
            raise ValueError(f"n_workers={self.n_workers}: must be >= 1")
        free = ray.available_resources().get("CPU", 0.0)
        fits = int(free // num_cpus) if num_cpus > 0 else self.n_workers
        if fits < self.n_workers:
            if fits < 1:
                raise RuntimeError(
                    f"the Ray cluster has {free:g} free CPUs, a decode actor needs {num_cpus:g}: "
                    "wait for other Ray jobs to finish, or connect to a larger cluster"
                )
            warnings.warn(
                f"{self.n_workers} decode actors asked for, {fits} fit in the {free:g} free Ray "
                f"CPUs; using {fits}",
                stacklevel=2,
            )
            self.n_workers = fits
        self._cls = ray.remote(num_cpus=num_cpus, max_restarts=0)(actor_class)
        self._actors = [self._cls.remote() for _ in range(self.n_workers)]
        ready, pending = ray.wait(
            [a.ready.remote() for a in self._actors], num_returns=self.n_workers,
            timeout=start_timeout_s,
        )
        if pending:
            self.close()
            raise RuntimeError(
                f"only {len(ready)} of {self.n_workers} decode actors started within "
                f"{start_timeout_s:g} s; the Ray cluster may be short of CPUs or memory "
                "(see 'ray status'); pass fewer --workers"
            )

    def map_unordered(self, jobs: Iterable[VideoJob]) -> Iterator[VideoResult]:
        """Run every job, at most one in flight per actor; yield results in completion order."""
        todo = list(jobs)[::-1]
        idle = list(range(len(self._actors)))
        running: dict[ray.ObjectRef, tuple[int, VideoJob]] = {}
        while todo or running:
            while todo and idle:
                a = idle.pop()
                job = todo.pop()
                running[self._actors[a].run.remote(job)] = (a, job)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            a, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                result = VideoResult(
                    source=job.source,
                    status="failed",
                    error=f"the decoder process crashed on this file ({type(e).__name__}); "
                    "the file is probably damaged: re-download or re-encode it",
                )
                self._actors[a] = self._cls.remote()
            except ray.exceptions.RayTaskError as e:  # ingest_video should not raise; be safe
                result = VideoResult(source=job.source, status="failed", error=str(e)[:500])
            idle.append(a)
            yield result

    def close(self) -> None:
        """Stop the actors."""
        for a in self._actors:
            ray.kill(a)
        self._actors = []

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
