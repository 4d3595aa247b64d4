"""catneuron's jobs on a real two-node Ray cluster on this machine (``ray start`` twice, see
``tests/cluster/raycluster.py``): ``catneuron submit`` and ``catneuron jobs`` against it, a
training job spread over both nodes, and a node that dies mid-training.

Jobs go through the dashboard's job API with the project as the runtime env's working_dir
(``--no-pip``: this environment already has the requirements, as a cluster image would).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cluster.raycluster import listening
from tests.pipeline.conftest import make_video

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STAGE = ("--model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1, "
         "sparsity_target=0.1}]")


def cli(cluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``catneuron ARGS`` as a user runs it, against ``cluster`` (RAY_ADDRESS + its token)."""
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env=cluster.client_env(), timeout=timeout)


def submitted_id(result: subprocess.CompletedProcess) -> str:
    """The job id ``catneuron submit`` printed first."""
    return result.stdout.split("\n", 1)[0].strip()


def train_args(data: Path, run_dir: Path, steps: int, *extra: str,
               worker_cpus: float = 0.3) -> list[str]:
    """A small async training job: 16x16 frames, one stage, 2 workers, 2 shards."""
    return ["train", f"--data.path={data}", "--data.batch_size=8", "--data.holdout_frames=16",
            "--model.input_size=16", "--model.input_lcn_sigma=1.5", STAGE,
            "--update.learning_rate=0.01", "--mode", "async", "--workers", "2",
            "--ps-shards", "2", "--train.stages=1", f"--steps={steps}",
            "--train.log_interval=4", f"--run-dir={run_dir}", f"--sim.worker_cpus={worker_cpus}",
            *extra]


def stage_actors(cluster, submission_id: str) -> dict[str, list[dict]]:
    """The Worker and ParameterShard actors of a job (alive or dead), by class name."""
    job_id = cluster.get(f"/api/jobs/{submission_id}")["job_id"]
    return {name: cluster.actors(job_id=job_id, class_name=name)
            for name in ("Worker", "ParameterShard")}


def wait_for(predicate, what: str, timeout_s: float = 300.0, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def _records(run_dir: Path) -> int:
    """Metric records the run has written so far (one per finished chunk of a worker)."""
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def ingested(two_nodes, tmp_path_factory):
    """``catneuron submit ingest``: 3 small videos -> 16x16 grey frames, 16 per shard."""
    tmp = tmp_path_factory.mktemp("multinode")
    videos = tmp / "videos"
    videos.mkdir()
    for i in range(3):
        make_video(videos / f"clip{i}.mp4", n_frames=48, seed=i)
    data = tmp / "data"
    result = cli(two_nodes, "submit", "--no-pip", "ingest", str(videos), "--out", str(data),
                 "--input-size", "16", "--shard-rows", "16", "--workers", "1", "--quiet")
    return data, result


@pytest.fixture(scope="module")
def trained(two_nodes, ingested, tmp_path_factory):
    """``catneuron submit train`` on the ingested frames, followed to the end."""
    data, _ = ingested
    run_dir = tmp_path_factory.mktemp("run") / "train"
    result = cli(two_nodes, "submit", "--no-pip", *train_args(data, run_dir, steps=40))
    return run_dir, result


def test_submit_runs_ingest_and_train_and_jobs_show_them(two_nodes, ingested, trained):
    data, ingest = ingested
    assert ingest.returncode == 0, ingest.stdout[-3000:] + ingest.stderr[-3000:]
    manifest = json.loads((data / "_manifest.json").read_text())
    assert sum(s["rows"] for s in manifest["shards"]) == 3 * 48
    run_dir, train = trained
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "SUCCEEDED" in train.stderr
    assert (run_dir / "model.pt").is_file()
    job = submitted_id(train)
    assert re.fullmatch(r"raysubmit_\w+", job), train.stdout[:300]

    status = cli(two_nodes, "jobs", "status", job)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout + status.stderr
    logs = cli(two_nodes, "jobs", "logs", job)
    assert logs.returncode == 0 and "stage 0 done" in logs.stdout
    listed = cli(two_nodes, "jobs", "list")
    assert job in listed.stdout and submitted_id(ingest) in listed.stdout
    missing = cli(two_nodes, "jobs", "status", "raysubmit_doesnotexist")
    assert missing.returncode == 1 and "no job" in missing.stderr and "Traceback" not in (
        missing.stderr)


def test_every_socket_of_the_cluster_listens_on_loopback(two_nodes, trained):
    # after jobs ran (job supervisors, drivers and actors' workers have come and gone)
    sockets = listening(two_nodes)
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, names
    assert sum(name == "raylet" for name, _, _ in sockets) >= 4  # node and object managers
    assert any("DashboardAgent" in n for n in names) and any("RuntimeEnv" in n for n in names)
    exposed = [s for s in sockets if s[1] not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert exposed == [], exposed


def test_training_spreads_workers_and_shards_over_both_nodes(two_nodes, trained):
    _, train = trained
    assert train.returncode == 0, train.stderr[-3000:]
    actors = stage_actors(two_nodes, submitted_id(train))
    nodes = {n["node_id"] for n in two_nodes.nodes()}
    assert len(nodes) == 2
    for name, rows in actors.items():
        assert len(rows) == 2, (name, rows)
        assert {a["node_id"] for a in rows} == nodes, (name, rows)


def test_a_compiled_transport_across_both_nodes_falls_back_to_tasks(two_nodes, ingested,
                                                                     tmp_path):
    """``train.sync_transport = "compiled"`` with its workers and shards on both nodes: no graph
    is compiled across nodes (one hung here and crashed a raylet); the steps go through Ray
    tasks, the events say so, and the run trains the same parameters as the same job with
    ``"tasks"``, bit for bit."""
    from models.state_file import load_state

    data, _ = ingested
    nodes = {n["node_id"] for n in two_nodes.nodes()}
    params = {}
    for transport in ("tasks", "compiled"):
        run_dir = tmp_path / transport
        result = cli(two_nodes, "submit", "--no-pip",
                     *train_args(data, run_dir, 24, "--mode", "sync",
                                 f'--train.sync_transport="{transport}"'))
        assert result.returncode == 0, result.stderr[-3000:]
        for name, rows in stage_actors(two_nodes, submitted_id(result)).items():
            assert {a["node_id"] for a in rows} == nodes, (transport, name, rows)
        params[transport] = load_state(run_dir / "model.pt")["state"]["rbms"][0]["params"]
    events = (tmp_path / "compiled" / "events.log").read_text()
    assert ('train.sync_transport="compiled" needs every worker and shard on the driver\'s '
            "node, and with the driver they run on 2 nodes: the steps go through Ray tasks"
            ) in events, events
    assert params["tasks"].keys() == params["compiled"].keys()
    for key, value in params["tasks"].items():
        assert torch.equal(value, params["compiled"][key]), key


def test_jobs_stop_stops_a_long_job_and_leaves_the_cluster_clean(two_nodes, ingested, tmp_path):
    data, _ = ingested
    run_dir = tmp_path / "long"
    started = cli(two_nodes, "submit", "--no-pip", "--no-wait",
                  *train_args(data, run_dir, steps=1_000_000))
    assert started.returncode == 0, started.stderr[-3000:]
    job = submitted_id(started)
    wait_for(lambda: _records(run_dir), "the job to train")
    stop = cli(two_nodes, "jobs", "stop", job)
    assert stop.returncode == 0 and "STOPPED" in stop.stdout, stop.stdout + stop.stderr
    status = cli(two_nodes, "jobs", "status", job)
    assert status.returncode == 1 and "STOPPED" in status.stdout
    job_id = two_nodes.get(f"/api/jobs/{job}")["job_id"]
    wait_for(lambda: not two_nodes.actors(job_id=job_id, state="ALIVE"),
             "the stopped job's actors to go", timeout_s=60)
    wait_for(lambda: not [a for a in two_nodes.actors(state="ALIVE")],
             "no actor left alive on the cluster", timeout_s=60)


def _checkpoint(run_dir: Path) -> tuple[dict, list[dict]]:
    """The last checkpoint of stage 0: meta and every shard's state."""
    stage_dir = run_dir / "checkpoints" / "stage0"
    folder = stage_dir / (stage_dir / "LATEST").read_text().strip()
    meta = torch.load(folder / "meta.pt", weights_only=True)
    shards = [torch.load(folder / f"shard{j}.pt", weights_only=True) for j in range(2)]
    return meta, shards


def test_a_node_dies_mid_training(two_nodes, ingested, tmp_path):
    data, _ = ingested
    node3 = two_nodes.add_node("node3", num_cpus=1, resources={"node3": 1})
    doomed = two_nodes.node_id("node3")
    run_dir = tmp_path / "dies"
    # enough steps that the job is still training when the node dies: the first metric records
    # come a chunk in, and 600 steps of this stage end within a second or two of them
    steps = 3000
    started = cli(two_nodes, "submit", "--no-pip", "--no-wait",
                  *train_args(data, run_dir, steps, "--train.checkpoint_every=200"))
    assert started.returncode == 0, started.stderr[-3000:]
    job = submitted_id(started)

    def on_doomed_node():
        rows = [a for group in stage_actors(two_nodes, job).values() for a in group]
        return [a for a in rows if a["state"] == "ALIVE" and a["node_id"] == doomed]

    lost = wait_for(on_doomed_node, "actors on node3")
    wait_for(lambda: _records(run_dir), "the job to train")
    node3.kill()
    last = run_dir / "checkpoints" / "stage0" / f"step{steps:08d}"
    assert not last.exists(), "the job ended before the node died: the test needs more steps"
    follow = cli(two_nodes, "jobs", "logs", job, "--follow", timeout=300)
    assert follow.returncode == 0, follow.stdout[-3000:] + follow.stderr[-3000:]
    assert "SUCCEEDED" in follow.stderr

    # the lost actors came back (same actor ids) on the surviving nodes
    after = {a["actor_id"]: a for g in stage_actors(two_nodes, job).values() for a in g}
    for a in lost:
        back = after[a["actor_id"]]
        assert int(back["num_restarts"]) >= 1 and back["node_id"] != doomed, back
    summary, _ = json.JSONDecoder().raw_decode(follow.stdout[follow.stdout.index("{\n"):])
    assert summary["stages"][0]["steps"] == steps
    assert (run_dir / "model.pt").is_file()
    # no update applied twice: a shard applies each (worker, seq) once, and the workers' pushes
    # carry seqs 0..seq_end-1, so a shard that never died applied exactly sum(seq_end) updates
    # and a restored one (it lost what came after its checkpoint) at most that
    meta, shards = _checkpoint(run_dir)
    pushed = sum(meta["seqs"])
    events = (run_dir / "events.log").read_text()
    restored = {int(i) for i in re.findall(r"shard (\d+) was restored", events)}
    for j, state in enumerate(shards):
        assert all(state["last_seq"][w] < meta["seqs"][w] for w in state["last_seq"])
        if j in restored:
            assert state["n_applied"] <= pushed
        else:
            assert state["n_applied"] == pushed, (j, state["n_applied"], pushed)


def _event_time(line: str) -> float:
    """The time of an ``events.log`` line (``YYYY-mm-ddTHH:MM:SS text``)."""
    return time.mktime(time.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S"))


def _head_and_a_fresh_node(cluster, name: str) -> None:
    """Leave the head alone (SIGKILL any other node of the fixture still alive), then join a
    fresh 1-CPU node ``name``: the two-node shape every node-loss test starts from."""
    for node in cluster.members:
        if node.name != "head" and node.alive():
            node.kill()
    wait_for(lambda: sum(n.get("state") == "ALIVE" for n in cluster.nodes()) == 1,
             "only the head to be alive", timeout_s=60)
    cluster.add_node(name, num_cpus=1, resources={name: 1})


def _kill_mid_training(cluster, node_name: str, run_dir: Path, job: str) -> float:
    """Once both nodes hold actors of ``job`` and it has trained, SIGKILL the node's process
    group (only the processes that node's ``ray start`` started); returns the time."""
    doomed = cluster.node_id(node_name)

    def on_doomed_node():
        rows = [a for group in stage_actors(cluster, job).values() for a in group]
        return len([a for a in rows if a["state"] == "ALIVE" and a["node_id"] == doomed]) == 2

    wait_for(on_doomed_node, f"a worker and a shard on {node_name}")
    wait_for(lambda: _records(run_dir), "the job to train")
    cluster.member(node_name).kill()
    return time.time()


def test_losing_a_node_async_goes_on_with_the_worker_that_fits(two_nodes, ingested, tmp_path):
    # the head and a second node, 1 CPU each; a worker asks for 0.6 CPU, a shard for 0.01: once
    # the second node is lost, the head holds both shards and one worker, not the second worker
    data, _ = ingested
    _head_and_a_fresh_node(two_nodes, "node4")
    run_dir = tmp_path / "survives"
    started = cli(two_nodes, "submit", "--no-pip", "--no-wait",
                  *train_args(data, run_dir, 1200, "--train.checkpoint_every=400",
                              worker_cpus=0.6))
    assert started.returncode == 0, started.stderr[-3000:]
    job = submitted_id(started)
    killed_at = _kill_mid_training(two_nodes, "node4", run_dir, job)
    follow = cli(two_nodes, "jobs", "logs", job, "--follow", timeout=420)
    assert follow.returncode == 0, follow.stdout[-3000:] + follow.stderr[-3000:]
    assert "SUCCEEDED" in follow.stderr
    summary, _ = json.JSONDecoder().raw_decode(follow.stdout[follow.stdout.index("{\n"):])
    assert summary["stages"][0]["steps"] == 1200
    events = (run_dir / "events.log").read_text().splitlines()
    waits = [e for e in events if re.search(
        r"worker \d waits for 0\.6 CPU \([^)]* free in the cluster\); [01] of 2 workers running",
        e)]  # 0 of 2 when the head's worker is itself recovering at that moment
    assert waits, "\n".join(events[-30:])
    assert _event_time(waits[0]) - killed_at < 60, (waits[0], killed_at)  # noticed in seconds
    assert (run_dir / "model.pt").is_file()


def test_losing_a_node_that_held_a_shard_fails_the_job_with_one_line(two_nodes, ingested,
                                                                     tmp_path):
    # a fresh second node; a worker asks for 0.99 CPU, so the surviving head (0.99 for its
    # worker, 0.01 for its shard) has no room for the lost node's shard
    data, _ = ingested
    _head_and_a_fresh_node(two_nodes, "node5")
    run_dir = tmp_path / "fails"
    started = cli(two_nodes, "submit", "--no-pip", "--no-wait",
                  *train_args(data, run_dir, 1_000_000, "--train.placement_timeout_s=20",
                              worker_cpus=0.99))
    assert started.returncode == 0, started.stderr[-3000:]
    job = submitted_id(started)
    killed_at = _kill_mid_training(two_nodes, "node5", run_dir, job)
    follow = cli(two_nodes, "jobs", "logs", job, "--follow", timeout=420)
    events = (run_dir / "events.log").read_text().splitlines()
    failed = [e for e in events if "placement_timeout_s=20" in e]
    assert failed, "\n".join(events[-30:])
    # the trainer's own verdict: the limit, plus room for Ray to notice the lost node and for
    # the trainer's next check on 2 busy cores
    assert _event_time(failed[0]) - killed_at < 20 + 180, (failed[0], killed_at, events[-30:])
    assert follow.returncode == 1 and "FAILED" in follow.stderr, follow.stderr[-3000:]
    status = cli(two_nodes, "jobs", "status", job)
    assert "FAILED" in status.stdout
    last = [x for x in follow.stdout.splitlines() if x.startswith("catneuron train: ")]
    assert len(last) == 1, follow.stdout[-3000:]
    assert re.search(r"parameter-server shard \d waits for 0\.01 CPU \(none free in the "
                     r"cluster\), for \d+ s \(train\.placement_timeout_s=20\)", last[0]), last
    assert "Traceback" not in follow.stdout


def test_losing_a_node_sync_says_what_it_waits_for_then_fails(two_nodes, ingested, tmp_path):
    # synchronous steps need every worker: the head takes the lost shard, not the lost worker
    data, _ = ingested
    _head_and_a_fresh_node(two_nodes, "node6")
    run_dir = tmp_path / "sync"
    started = cli(two_nodes, "submit", "--no-pip", "--no-wait",
                  *train_args(data, run_dir, 1_000_000, "--mode", "sync",
                              "--train.placement_timeout_s=15", worker_cpus=0.6))
    assert started.returncode == 0, started.stderr[-3000:]
    job = submitted_id(started)
    killed_at = _kill_mid_training(two_nodes, "node6", run_dir, job)
    follow = cli(two_nodes, "jobs", "logs", job, "--follow", timeout=420)
    assert time.time() - killed_at < 15 + 180
    assert follow.returncode == 1 and "FAILED" in follow.stderr, follow.stderr[-3000:]
    # how many workers run when a wait is reported depends on how far the synchronous step's
    # workers are in their own recovery (0 or 1 of 2 seen on 2 busy cores); the lost worker is
    # never among them
    waits = re.findall(r"synchronous steps wait for every worker and shard: worker \d waits "
                       r"for 0\.6 CPU \([^)]* free in the cluster\); [01] of 2 workers running",
                       follow.stdout)
    assert waits, follow.stdout[-3000:]
    last = [x for x in follow.stdout.splitlines() if x.startswith("catneuron train: ")]
    assert len(last) == 1, follow.stdout[-3000:]
    assert re.search(r"worker \d waits for 0\.6 CPU \([^)]* free in the cluster\), for \d+ s "
                     r"\(train\.placement_timeout_s=15\); [01] of 2 workers running", last[0]), last
