"""``ray start`` for a Ray cluster whose nodes all run on this machine and listen on 127.0.0.1.

``python -m cluster.loopback --head --node-ip-address=127.0.0.1 ...`` and
``python -m cluster.loopback --address=127.0.0.1:PORT --node-ip-address=127.0.0.1 ...`` take
exactly ``ray start``'s flags. Why not plain ``ray start``: it replaces a loopback node address
(``--node-ip-address=127.0.0.1``, or ``--address=127.0.0.1:PORT`` when joining) with the
machine's network address, so the GCS, the raylets (node manager, object manager) and the
agents bind an interface other machines reach; and it refuses to join a second node when told
to keep loopback addresses (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). Here the addresses given
are kept as they are (``ray._private.services.resolve_ip_for_localhost`` is replaced by the
identity for this command), and the node's processes inherit
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, so a driver started on the node (a submitted job)
also connects through 127.0.0.1 instead of looking up the machine's address.

This is for tests and for trying a cluster on one machine. On a real cluster, run ``ray start``
itself with ``--node-ip-address`` set to each node's private address (see the README).
"""

from __future__ import annotations

import os
import sys

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Inherited by the node's processes: a Ray process that resolves 127.0.0.1 keeps it."""


def _keep(host: str) -> str:
    """The address as given (Ray's own version maps loopback names to the machine's address)."""
    return host


def main(argv: list[str]) -> None:
    """Run ``ray start ARGV`` with loopback addresses kept (see the module docstring)."""
    from ray._private import ray_constants, services
    from ray.scripts.scripts import main as ray_main

    services.resolve_ip_for_localhost = _keep
    ray_constants.ENABLE_RAY_CLUSTER = True  # this process may join a node to a cluster
    os.environ.update(LOOPBACK_ENV)
    sys.argv = ["ray", "start", *argv]
    ray_main()


if __name__ == "__main__":
    main(sys.argv[1:])
