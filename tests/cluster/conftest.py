"""Fixtures of the cluster tests: a real two-node Ray cluster on 127.0.0.1 (``ray start``)."""

from __future__ import annotations

import pytest

from tests.cluster.raycluster import remove, start_cluster


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (1 CPU) and a second node ``node2`` (1 CPU, custom resource ``node2``), each
    its own ``ray start --block`` process group with its own temp dir; killed at the end."""
    cluster = start_cluster(workers={"node2": {"num_cpus": 1, "resources": {"node2": 1}}})
    yield cluster
    remove(cluster)
