"""Shared fixtures: one real local Ray cluster per test session."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


def pytest_configure(config):
    """Caches the commands keep between runs (``catneuron evaluate``'s baseline tables) go to a
    folder of this session, removed at its end: no test reads what an earlier session or the
    user's own runs left, and none writes into the user's home."""
    config._catneuron_cache = tempfile.mkdtemp(prefix="catneuron-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._catneuron_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_catneuron_cache", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs), started once and shared by every test that asks: the
    local Ray a user's run starts (:func:`pipeline.pool.start_local_ray`: 127.0.0.1 only, never
    a cluster left on the machine, the same settings).

    If ``RAY_ADDRESS`` is set (``.ci/run`` may start ``ray start --head``), attach to it instead.
    """
    import ray

    from pipeline.pool import start_local_ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_store():
    """A real S3-compatible server on 127.0.0.1 (moto's standalone server) with a bucket
    ``catneuron``; yields the environment a client needs (AWS_ENDPOINT_URL and credentials),
    which is also set in this process while the session lasts."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="catneuron")
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
