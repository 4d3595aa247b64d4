"""jobs.control (``catneuron jobs``): exit statuses and messages, against a stand-in job client.

The real cluster path (submit, follow, stop on a two-node ``ray start`` cluster) is
tests/jobs/test_submit.py; here each command's own logic runs against a small in-memory client
with the methods of ``ray.job_submission.JobSubmissionClient`` that the commands call.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

import pytest

from cluster import submission
from jobs import control


class Status(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


def _job(job_id, status, start, message=""):
    return SimpleNamespace(submission_id=job_id, job_id=None, status=Status(status),
                           entrypoint=f"python -m jobs.train # {job_id}", start_time=start,
                           end_time=None, message=message, metadata={}, runtime_env={})


class FakeClient:
    """The JobSubmissionClient methods jobs.control uses; unknown ids fail as Ray's do."""

    def __init__(self, jobs):
        self.jobs = {j.submission_id: j for j in jobs}
        self.stopped = []

    def _get(self, job_id):
        if job_id == "" or job_id[0] in "#?":  # Ray 2.60 asks /api/jobs/ (its list) and fails
            raise TypeError("ray.dashboard.modules.job.pydantic_models.JobDetails() argument "
                            "after ** must be a mapping, not list")
        if job_id not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        return self.jobs[job_id]

    def list_jobs(self):
        return list(self.jobs.values())

    def get_job_info(self, job_id):
        return self._get(job_id)

    def get_job_status(self, job_id):
        return self._get(job_id).status

    def get_job_logs(self, job_id):
        return f"log of {self._get(job_id).submission_id}\n"

    def stop_job(self, job_id):
        job = self._get(job_id)
        if job.status is not Status.RUNNING:
            return False
        job.status = Status.STOPPED
        self.stopped.append(job_id)
        return True


@pytest.fixture
def client(monkeypatch):
    fake = FakeClient([_job("b-late", "FAILED", 20, "worker died"),
                       _job("a-early", "RUNNING", 10), _job("c-done", "SUCCEEDED", 30)])
    monkeypatch.setattr(submission, "connect", lambda address: fake)
    return fake


def test_list_orders_by_start_time(client, capsys):
    assert control.main(["list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["id", "status", "entrypoint"]
    assert [r.split()[:2] for r in rows[1:]] == [
        ["a-early", "RUNNING"], ["b-late", "FAILED"], ["c-done", "SUCCEEDED"]]


@pytest.mark.parametrize("job_id, status", [("a-early", 0), ("c-done", 0), ("b-late", 1)])
def test_status_exit_code_follows_the_job(client, capsys, job_id, status):
    assert control.main(["status", job_id]) == status
    out = capsys.readouterr().out
    assert f"id:         {job_id}" in out


def test_unknown_job_is_one_line_and_exit_1(client, capsys):
    assert control.main(["logs", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("catneuron jobs: error: no job 'nope' on this cluster "
                           "('catneuron jobs list')")


def test_stop_a_running_job_and_a_finished_one(client, capsys):
    assert control.main(["stop", "a-early"]) == 0
    assert client.stopped == ["a-early"]
    assert "job a-early STOPPED" in capsys.readouterr().out
    assert control.main(["stop", "c-done"]) == 0
    assert "is not running (SUCCEEDED)" in capsys.readouterr().err
    assert client.stopped == ["a-early"]


def test_logs_prints_them(client, capsys):
    assert control.main(["logs", "c-done"]) == 0
    assert capsys.readouterr().out == "log of c-done\n"


def test_unreachable_cluster_is_exit_2(monkeypatch, capsys):
    def refuse(address):
        raise submission.ClusterUnreachable(f"no Ray job server answers at {address}")

    monkeypatch.setattr(submission, "connect", refuse)
    assert control.main(["list", "--address", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("catneuron jobs: error: no Ray job server answers")


def test_usage_errors_are_exit_2(capsys):
    assert control.main([]) == 2
    assert control.main(["status"]) == 2


def test_an_address_that_is_not_an_http_dashboard_is_one_line(capsys):
    """A bad port in the URL, or a server that answers something other than HTTP: exit 2 with
    one line, as for a refused connection."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_ssh():
        conn, _ = server.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=answer_ssh, daemon=True).start()
    try:
        port = server.getsockname()[1]
        for address in ("http://h:abc", f"http://127.0.0.1:{port}"):
            assert control.main(["list", "--address", address]) == 2, address
            err = capsys.readouterr().err
            assert err.startswith("catneuron jobs: error: no Ray cluster answers at")
            assert err.count("\n") == 1
    finally:
        server.close()


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
@pytest.mark.parametrize("job_id, problem", [
    ("", "an empty job id"), ("  ", "an empty job id"),
    ("#1", "cannot look up an id holding '#'"), ("a/b", "cannot look up an id holding '/'"),
    ("a?b", "cannot look up an id holding '?'")])
def test_an_id_ray_cannot_look_up_is_a_usage_error(client, capsys, command, job_id, problem):
    """An empty id (or one starting with '#' or '?') asked Ray for /api/jobs/, its list, and
    Ray's client failed with a TypeError and its traceback; 'a/b' asked for another route."""
    assert control.main([command, job_id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catneuron jobs: error: argument ID: ") and problem in err, err
    assert err.count("\n") == 1
    assert client.stopped == []


def test_a_server_error_is_one_line(client, capsys, monkeypatch):
    """Ray's job server sends a failure back as its whole Python traceback: it was printed
    as it came (up to 500 characters, over many lines)."""
    def fail(job_id):
        raise RuntimeError(TRACEBACK)

    monkeypatch.setattr(client, "get_job_logs", fail)
    assert control.main(["logs", "c-done"]) == 1
    err = capsys.readouterr().err
    assert err == ("catneuron jobs: error: Request failed with status code 500: RuntimeError: "
                   "Request failed with status code 405: 405: Method Not Allowed.\n"), err


TRACEBACK = """Request failed with status code 500: Traceback (most recent call last):
  File "/venv/ray/dashboard/modules/job/job_head.py", line 591, in get_job_logs
    await job_agent_client.get_job_logs_internal(job.submission_id)
  File "/venv/ray/dashboard/modules/job/job_head.py", line 134, in _raise_error
    raise RuntimeError(f"Request failed with status code {status}: {error_text}.")
RuntimeError: Request failed with status code 405: 405: Method Not Allowed.
."""
