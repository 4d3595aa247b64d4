"""A real multi-node Ray cluster on this machine, for tests: ``ray start --head`` plus worker nodes
joined with ``ray start --address``, each with its own temp dir, started in its own process group
and torn down by killing exactly those groups (never ``ray stop``, which would stop every Ray on
the machine).

Ray's ``ray start`` records the cluster's address in ``<temp dir>/ray_current_cluster``; with
``--temp-dir`` on every node that file lives in this cluster's own folder, so a later plain
``ray.init()`` elsewhere (which reads ``/tmp/ray/ray_current_cluster``) never joins this one.
Every node is started by :mod:`cluster.loopback` (``ray start`` keeping 127.0.0.1 as the node
address, which plain ``ray start`` replaces with the machine's address), so every socket of
the cluster (GCS, dashboard, raylets' node and object managers, agents, metrics, client
server, workers) listens on 127.0.0.1, on ports picked free for this cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cluster.loopback import LOOPBACK_ENV

ROOT = Path(__file__).resolve().parents[2]

# Node death is noticed after health_check_failure_threshold failed checks of period ms: keep it
# to about two seconds so a test of a dying node does not wait Ray's default ~15 s.
FAST_HEALTH_CHECK = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                     "RAY_health_check_failure_threshold": "4"}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and never one this process handed out before.

    The OS may give the same ephemeral port to two ``bind(0)`` calls once the first socket is
    closed; two Ray components told to share a port refuse to start, so ports are remembered."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Node:
    """One ``ray start --block`` process group."""

    name: str
    temp_dir: Path
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the node's whole process group (raylet, its workers, agents)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class LocalCluster:
    """A head node and worker nodes on 127.0.0.1. ``address`` is the GCS address (what
    ``ray.init`` and ``RAY_ADDRESS`` take); ``dashboard`` the job-submission URL."""

    root: Path
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    members: list[Node] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], env: dict | None = None) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        # a node's own ports: two nodes on one machine must not share the agents' defaults
        ports = ["--dashboard-agent-listen-port", str(free_port()),
                 "--metrics-export-port", str(free_port()),
                 "--runtime-env-agent-port", str(free_port())]
        cmd = [sys.executable, "-m", "cluster.loopback", "--block", "--node-ip-address=127.0.0.1",
               f"--temp-dir={temp_dir}", "--disable-usage-stats", *ports, *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**self.env, **(env or {})},
                                    cwd=ROOT,
                                    start_new_session=True)
        node = Node(name, temp_dir, proc, log)
        self.members.append(node)
        return node

    def start_head(self, num_cpus: int = 1) -> Node:
        head = self._start("head", [
            "--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", f"--num-cpus={num_cpus}",
            f"--ray-client-server-port={free_port()}", "--include-dashboard=true"],
            # the autoscaler's and the dashboard's metrics ports are fixed unless set here
            env={"AUTOSCALER_METRIC_PORT": str(free_port()),
                 "DASHBOARD_METRIC_PORT": str(free_port())})
        self._wait(lambda: self._n_alive_nodes() >= 1, head, "the head node's dashboard")
        return head

    def add_node(self, name: str, num_cpus: int = 1, resources: dict | None = None) -> Node:
        before = self._n_alive_nodes()
        node = self._start(name, [
            f"--address={self.address}", f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources or {})}"])
        self._wait(lambda: self._n_alive_nodes() > before, node, f"node {name} to join")
        return node

    def member(self, name: str) -> Node:
        """The node started as ``name`` (``"head"``, ``"node2"``, ...)."""
        return next(node for node in self.members if node.name == name)

    def client_env(self) -> dict:
        """Environment for a client of this cluster (its address and auth token)."""
        return {**self.env, "RAY_ADDRESS": self.dashboard}

    def get(self, path: str, timeout_s: float = 5.0):
        """GET ``path`` from the dashboard (JSON), with the cluster's token."""
        request = urllib.request.Request(f"{self.dashboard}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            return json.load(r)

    def nodes(self) -> list[dict]:
        """Every node the state API knows: ``node_id``, ``state``, ``resources_total``, ..."""
        return self.get("/api/v0/nodes?limit=100")["data"]["result"]["result"]

    def actors(self, **filters) -> list[dict]:
        """Actors the state API knows (alive and dead), filtered by equal fields."""
        rows = self.get("/api/v0/actors?limit=1000&detail=true")["data"]["result"]["result"]
        return [a for a in rows if all(a.get(k) == v for k, v in filters.items())]

    def node_id(self, resource: str) -> str:
        """The id of the node that holds the custom ``resource``."""
        return next(n["node_id"] for n in self.nodes()
                    if resource in n.get("resources_total", {}))

    def _n_alive_nodes(self) -> int:
        """Alive nodes as the state API reports them (0 while the dashboard is not up)."""
        try:
            return sum(1 for n in self.nodes() if n.get("state") == "ALIVE")
        except (OSError, ValueError, KeyError):
            return 0

    def _wait(self, ready, node: Node, what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if not node.alive():
                break
            time.sleep(0.5)
        self.teardown()
        raise RuntimeError(f"waiting for {what} failed; see {node.log}:\n"
                           + node.log.read_text(errors="replace")[-3000:])

    def teardown(self) -> None:
        """Kill every node's process group (workers first, then the head)."""
        for node in reversed(self.members):
            node.kill()
        self.members.clear()


def start_cluster(*, workers: dict[str, dict] | None = None, head_cpus: int = 1,
                  env: dict | None = None) -> LocalCluster:
    """Start a head and the named worker nodes (``{name: {"num_cpus": 1, "resources": {...}}}``)
    in a fresh short temp folder (Unix socket paths must stay under 108 bytes)."""
    token = secrets.token_hex(32)
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", *LOOPBACK_ENV))}
    # the job driver runs "python": this interpreter's environment, as a cluster image would
    path = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    base_env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
                     "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PATH": path,
                     **FAST_HEALTH_CHECK, **(env or {})})
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="cnray", dir="/tmp")), env=base_env,
                           token=token)
    try:
        cluster.start_head(head_cpus)
        for name, spec in (workers or {}).items():
            cluster.add_node(name, **spec)
    except BaseException:
        remove(cluster)
        raise
    return cluster


def processes_of(cluster: LocalCluster) -> list[int]:
    """PIDs of live processes whose command line names the cluster's folder (its raylets,
    GCS, agents and workers all do)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
        except OSError:
            continue
        if str(cluster.root).encode() in cmdline and "zombie" not in state:
            pids.append(int(entry.name))
    return pids


def listening(cluster: LocalCluster) -> list[tuple[str, str, int]]:
    """``(process name, ip, port)`` of every listening TCP socket of the cluster's processes:
    each node's process tree (agents rename themselves, so their command line no longer names
    the cluster's folder) and every process naming the folder."""
    import psutil

    pids = set(processes_of(cluster))
    for node in cluster.members:
        try:
            pids |= {p.pid for p in psutil.Process(node.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            continue
    out = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            out += [(process.name(), c.laddr.ip, c.laddr.port)
                    for c in process.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return out


def remove(cluster: LocalCluster) -> None:
    """Tear the cluster down and delete its folder."""
    cluster.teardown()
    shutil.rmtree(cluster.root, ignore_errors=True)
