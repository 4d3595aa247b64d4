"""Fixtures of the cluster tests: a real two-node Ray cluster on 127.0.0.1 (``ray start``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tests.cluster.raycluster import processes_of, remove, start_cluster

DEFAULT_ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # what a plain ray.init() reads


@pytest.fixture(autouse=True)
def subnormals_back():
    """A Worker built in the test process flushes subnormal floats on its thread
    (:func:`cluster.worker.compute_on_this_thread`); later tests get IEEE behaviour back."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (1 CPU) and a second node ``node2`` (1 CPU, custom resource ``node2``), each
    its own ``ray start --block`` process group with its own temp dir; killed at the end."""
    cluster = start_cluster(workers={"node2": {"num_cpus": 1, "resources": {"node2": 1}}})
    # ray start recorded the address in the cluster's own temp dir, not where ray.init() looks
    assert cluster.address.split(":")[1] in (cluster.root / "head" / "ray_current_cluster"
                                             ).read_text()
    yield cluster
    remove(cluster)
    deadline = time.monotonic() + 30
    while processes_of(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_of(cluster), "processes of the test cluster outlived its teardown"
    if DEFAULT_ADDRESS_FILE.exists():
        assert f":{cluster.gcs_port}" not in DEFAULT_ADDRESS_FILE.read_text()
