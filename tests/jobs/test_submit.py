"""``catneuron submit`` / ``catneuron jobs``: the job spec they build, the address they use, one
clear line (no traceback) when no cluster answers; and against a real one-node cluster
(``ray_head``), an unknown job id and a failed job."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cluster.submission import (
    DEFAULT_ADDRESS,
    entrypoint,
    project_root,
    resolve_address,
    runtime_env,
    runtime_requirements,
)

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_runtime_env_carries_the_tree_and_every_runtime_requirement_but_ray():
    env = runtime_env()
    assert Path(env["working_dir"]) == ROOT == project_root()
    assert {".venv", "runs", ".git", "__pycache__"} <= set(env["excludes"])
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {Requirement(r).name: Requirement(r) for r in declared if not r.startswith("ray")}
    shipped = {Requirement(r).name: Requirement(r) for r in env["pip"]}
    assert shipped.keys() == wanted.keys()
    assert all(str(shipped[n].specifier) == str(wanted[n].specifier) for n in wanted)
    assert "numba" in shipped and "ray" not in shipped
    assert runtime_requirements() == env["pip"]


def test_no_pip_leaves_the_requirements_to_the_image():
    assert "pip" not in runtime_env(pip=False)


def test_entrypoint_is_the_job_module_with_its_arguments_quoted():
    command = entrypoint("train", ["--config", "my configs/x.toml", "--data.path=s3://b/d"])
    assert shlex.split(command) == ["python", "-m", "jobs.train", "--config",
                                    "my configs/x.toml", "--data.path=s3://b/d"]


def test_address_precedence_like_rays_cli(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None) == DEFAULT_ADDRESS == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    assert resolve_address(None) == "http://head:8265"
    assert resolve_address("10.0.0.5:8265") == "http://10.0.0.5:8265"
    with pytest.raises(ValueError, match="Ray Client"):
        resolve_address("ray://head:10001")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [["submit", "train", "--run-dir=/srv/run", "--data.path=/srv/d"],
                                  ["jobs", "list"],
                                  ["jobs", "status", "raysubmit_x"], ["jobs", "stop", "x"]])
def test_a_dead_cluster_is_one_line_and_a_non_zero_exit(argv):
    address = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *argv, "--address", address]
                            if argv[0] == "jobs" else
                            [sys.executable, "-m", "jobs.cli", "submit", "--address", address,
                             *argv[1:]],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 20
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert address in lines[0] and "ray start --head" in lines[0]


def test_unknown_job_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "submit", "bake"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown job 'bake'" in result.stderr


def test_no_job_names_the_jobs():
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "submit"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "ARGS" not in result.stderr
    assert "name the JOB" in lines[-1] and "train" in lines[-1]


@pytest.mark.parametrize("option", ["--address", "--no-wait", "--submission-id=x"])
def test_submits_own_option_after_the_job_is_refused_not_passed_on(option):
    """Placed after JOB, it would go to the job, and an --address would be ignored for the
    default one."""
    address = f"http://127.0.0.1:{_closed_port()}"
    extra = [option, address] if option == "--address" else [option]
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "submit", "demo", *extra],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    name = option.split("=")[0]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{name} is an option of submit itself: put it before JOB" in result.stderr


def test_the_readme_names_exactly_the_jobs_submit_takes():
    """It said 'any of the jobs above', which included gallery (and submit, jobs)."""
    from jobs.submit import JOBS

    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `catneuron submit "))
    what = row.split("|")[2]
    named = re.findall(r"`([a-z]+)`", what.split("(not", 1)[0])
    assert named == list(JOBS), row
    assert "any of the jobs above" not in what


def _cli(cluster, *args: str) -> subprocess.CompletedProcess:
    """``catneuron ARGS`` as a user runs it against ``cluster`` (RAY_ADDRESS and its token)."""
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env=cluster.client_env(), timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("follow", [[], ["--follow"]])
def test_logs_of_an_unknown_job_is_one_line_with_or_without_follow(ray_head, follow):
    """--follow opened Ray's log stream, whose 404 handshake error was a traceback."""
    result = _cli(ray_head, "jobs", "logs", "nope", *follow)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "catneuron jobs: error: no job 'nope' on this cluster " \
                            "('catneuron jobs list')\n", result.stderr


@pytest.mark.slow
def test_a_failed_job_ends_with_ray_s_first_sentence_not_its_log_again(ray_head):
    """Ray appends the job's whole log to a failure's message; submit streamed the log already,
    and 'jobs status' says where it is. Ray's SDK INFO lines (package upload, WebSocket
    closed) stay off the terminal."""
    result = _cli(ray_head, "submit", "--no-pip", "train", "--config", "demo",
                  "--train.bogus=1")
    job_id = result.stdout.split("\n", 1)[0].strip()
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("unknown key train.bogus") == 1  # the job's own error, streamed
    assert result.stderr == (f"catneuron submit: job {job_id} FAILED: Job entrypoint command "
                             "failed with exit code 2\n"), result.stderr

    status = _cli(ray_head, "jobs", "status", job_id)
    assert status.returncode == 1
    assert status.stdout.splitlines()[-1] == (
        "message:    Job entrypoint command failed with exit code 2 (its logs: catneuron jobs "
        f"logs {job_id})"), status.stdout
    assert "unknown key" not in status.stdout


class _RefusingClient:
    """A job server that refuses every submission as Ray 2.60's does a duplicate id: a 500
    whose text is the server's own traceback."""

    submitted: list = []

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        raise RuntimeError(
            "Request failed with status code 500: Traceback (most recent call last):\n"
            '  File "/venv/ray/dashboard/modules/job/job_head.py", line 419, in submit_job\n'
            "    resp = await job_agent_client.submit_job_internal(submit_request)\n"
            "ValueError: Job with submission_id j1 already exists. Please use a different "
            "submission_id.\n.")


def test_a_refused_submission_is_one_line(monkeypatch, capsys):
    """'catneuron submit --submission-id ID' with an id the cluster already has printed Ray's
    traceback text after 'the cluster refused the job:'."""
    from cluster import submission
    from jobs import submit

    monkeypatch.setattr(submission, "connect", lambda address: _RefusingClient())
    assert submit.main(["--no-pip", "--submission-id", "j1", "plan", "--config", "demo"]) == 2
    err = capsys.readouterr().err
    assert err == ("catneuron submit: error: the cluster refused the job: Request failed with "
                   "status code 500: ValueError: Job with submission_id j1 already exists. "
                   "Please use a different submission_id.\n"), err


@pytest.mark.parametrize("given", ["", "a/b", "../x", "a#b", "a b", "x" * 129, "-x"])
def test_a_submission_id_ray_cannot_look_up_again_is_refused_before_submitting(
        monkeypatch, capsys, given):
    """With a '/' Ray recorded the job, failed to open its log on the head node (the id is
    part of the file's name) and left it PENDING for good, after a traceback; a '#' made a job
    that 'catneuron jobs' cannot find; '' was silently replaced by an id Ray made up. The rule
    is an allowlist (letters, digits and . _ - :, at most 128), so a space or a leading '-' is
    refused too."""
    from cluster import submission
    from jobs import submit

    client = _RefusingClient()
    client.submitted = []
    monkeypatch.setattr(submission, "connect", lambda address: client)
    assert submit.main(["--no-pip", f"--submission-id={given}", "plan", "--config", "demo"]) == 2
    err = capsys.readouterr().err
    assert "argument --submission-id: " in err and "is not an id Ray can look up" in err, err
    assert err.count("\n") == 1 and client.submitted == []


class _AcceptingClient:
    """A job server that takes every submission (and records it)."""

    def __init__(self):
        self.submitted = []

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        return "raysubmit_test"


@pytest.mark.parametrize("job_args, named", [
    (["ingest", "--demo", "--out", "relout"], "--out relout"),
    (["ingest", "--demo", "--out=./relout"], "--out ./relout"),
    (["ingest", "--demo", "--out", "~/data"], "--out ~/data"),  # no shell expands it there
    (["evaluate", "--run", "runs/demo/train"], "--run runs/demo/train"),
    (["train", "--config", "demo", '--train.run_dir="runs/x"'], "--train.run_dir runs/x"),
    (["train", "--config", "demo", "--data.path=/data"],
     "the config's train.run_dir runs/demo/train (--run-dir sets it)"),
    (["demo"], "demo's default --out runs/demo"),
    (["train", "--config", "demo", "--run-dir=/srv/run"],  # it failed on the cluster, exit 1
     "the config's data.path runs/demo/data (--data.path sets it)"),
    (["train", "--config", "demo", "--data.path=d", "--run-dir=/srv/run"],
     "the config's data.path d (--data.path sets it)"),
])
def test_an_output_given_as_a_relative_path_is_refused_before_submitting(
        monkeypatch, capsys, job_args, named):
    """The job runs in Ray's copy of the source tree: 'submit ingest --demo --out relout'
    SUCCEEDED and said '-> relout', and the dataset was in
    .../runtime_resources/working_dir_files/_ray_pkg_.../relout, not in ./relout."""
    from cluster import submission
    from jobs import submit

    client = _AcceptingClient()
    monkeypatch.setattr(submission, "connect", lambda address: client)
    assert submit.main(["--no-pip", "--no-wait", *job_args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"catneuron submit: error: {named} is a relative path: ")
    assert err.count("\n") == 1 and client.submitted == []


@pytest.mark.parametrize("job_args", [
    ["ingest", "--demo", "--out", "/srv/data"],
    ["ingest", "--demo", "--out", "s3://b/data"],
    ["train", "--config", "demo", "--data.path=/d", "--run-dir=/srv/run"],
    ["train", "--config", "demo", "--train.bogus=1"],  # the job reports it, as before
    ["train", "--resume", "--run-dir=s3://b/run"],
    ["demo", "--out", "/srv/demo"],
    ["plan", "--config", "demo", "--nodes", "2"],
])
def test_absolute_and_object_store_outputs_are_submitted(monkeypatch, capsys, job_args):
    from cluster import submission
    from jobs import submit

    client = _AcceptingClient()
    monkeypatch.setattr(submission, "connect", lambda address: client)
    assert submit.main(["--no-pip", "--no-wait", "--no-storage-check", *job_args]) == 0
    assert capsys.readouterr().out == "raysubmit_test\n"
    assert len(client.submitted) == 1
