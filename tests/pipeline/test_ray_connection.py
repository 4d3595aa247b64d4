"""``ensure_ray``: a local run starts its own Ray on 127.0.0.1; a given address that does not
answer fails within seconds. Each case runs in a fresh Python process (Ray is per process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LISTENERS = """
import json, os, ray
from pipeline.pool import ensure_ray
import psutil
ensure_ray(num_cpus=1)

@ray.remote
class Echo:
    def pid(self):
        return os.getpid()

echo = Echo.remote()
ray.get(echo.pid.remote())
me = psutil.Process()
out = []
for p in [me] + me.children(recursive=True):
    try:
        conns = p.net_connections(kind="inet")
    except psutil.Error:
        continue
    out += [[p.name(), c.laddr.ip, c.laddr.port] for c in conns if c.status == psutil.CONN_LISTEN]
print("LISTEN " + json.dumps(out))
ray.shutdown()
"""


def _run(code: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("RAY_ADDRESS", None) if "RAY_ADDRESS" not in env else None
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, text=True,
                          capture_output=True, timeout=timeout)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_and_ignores_a_leftover_cluster():
    # a dead `ray start` head left its address where a bare ray.init() looks for one (a short
    # temporary folder: Ray's socket paths must fit in 107 bytes)
    with tempfile.TemporaryDirectory(prefix="cn", dir="/tmp") as tmp:
        (Path(tmp) / "ray").mkdir()
        (Path(tmp) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_closed_port()}")
        proc = _run(LISTENERS, {"RAY_TMPDIR": tmp}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LISTEN "))
    listening = json.loads(line[len("LISTEN "):])
    names = {name for name, _, _ in listening}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names)
    exposed = [x for x in listening if x[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert exposed == [], exposed
    assert "Token authentication is enabled" not in proc.stderr


INLINE = """
import ray
from pipeline.pool import ensure_ray
ensure_ray(num_cpus=1)

@ray.remote
def parameters():
    return bytes(300_000)  # a competitive stage's parameters are 197 KB

ref = parameters.remote()
ray.get(ref)
print("NODES", len(ray.experimental.get_object_locations([ref])[ref]["node_ids"]))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize("own", ["", "102400"])
def test_a_local_ray_returns_values_up_to_a_mib_in_the_reply_unless_told_otherwise(
        own, monkeypatch):
    # in the reply: no node's shared-memory store holds the value; a setting in the
    # environment (here Ray's own default, 100 KiB) is kept
    monkeypatch.delenv("RAY_max_direct_call_object_size", raising=False)
    proc = _run(INLINE, {"RAY_max_direct_call_object_size": own} if own else {}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nodes = next(x for x in proc.stdout.splitlines() if x.startswith("NODES "))
    assert nodes == ("NODES 1" if own else "NODES 0")


def test_the_local_settings_recorded_are_the_exported_ones_where_exported(monkeypatch):
    from pipeline.pool import LOCAL_RAY_SYSTEM_CONFIG, local_ray_settings

    monkeypatch.delenv("RAY_max_direct_call_object_size", raising=False)
    assert local_ray_settings() == LOCAL_RAY_SYSTEM_CONFIG == {
        "max_direct_call_object_size": 1 << 20}
    monkeypatch.setenv("RAY_max_direct_call_object_size", "102400")
    assert local_ray_settings() == {"max_direct_call_object_size": 102400}


def test_an_address_that_does_not_answer_fails_within_seconds():
    code = ("from pipeline.pool import ensure_ray, RayUnreachable\n"
            "try:\n    ensure_ray()\nexcept RayUnreachable as e:\n    print('ERR', e)\n")
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    proc = _run(code, {"RAY_ADDRESS": address}, timeout=60)
    assert time.monotonic() - t0 < 30
    err = [x for x in proc.stdout.splitlines() if x.startswith("ERR ")]
    assert err and f"Ray at {address} (from RAY_ADDRESS) does not answer" in err[0], proc.stderr


def test_the_hint_names_where_the_address_came_from():
    # a --ray-address that does not answer is not fixed by unsetting RAY_ADDRESS
    from pipeline.pool import RayUnreachable, _check_answers

    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(RayUnreachable, match="or drop --ray-address to run"):
        _check_answers(address, "--ray-address", 5)
    with pytest.raises(RayUnreachable, match="or unset RAY_ADDRESS to run"):
        _check_answers(address, "RAY_ADDRESS", 5)
