"""Shared fixtures: one real local Ray cluster per test session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs), started once and shared by every test that asks.

    If ``RAY_ADDRESS`` is set (``.ci/run`` may start ``ray start --head``), attach to it instead.
    """
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
