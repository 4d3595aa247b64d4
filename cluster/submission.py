"""Ray's job-submission API as catneuron uses it: the cluster's address, a connected client, the
runtime environment that carries the project, and a job's logs and outcome.

A submitted job runs ``python -m jobs.<name> ARGS`` on the cluster's head node (what
``ray job submit -- python -m jobs.train ...`` runs) in a runtime environment whose
``working_dir`` is this project's source tree and whose ``pip`` list is the project's runtime
requirements (``importlib.metadata``: the ``dependencies`` of ``pyproject.toml``), so a cluster of
plain Ray nodes can run it. ``ray`` itself is left out of ``pip``: the cluster already runs Ray,
and a runtime environment must not replace it.

Address, like Ray's own CLI: ``--address``, else ``RAY_ADDRESS``, else the local cluster's
dashboard at ``http://127.0.0.1:8265``. Token authentication (Ray's default once a token exists)
uses ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as Ray does.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
CONNECT_TIMEOUT_S = 10.0
# What a job's working_dir leaves behind (Ray also honours the tree's .gitignore files).
EXCLUDES = [".git", ".venv", "venv", "runs", "data", "__pycache__", "*.pyc", "*.parquet",
            ".pytest_cache", ".ruff_cache", "*.egg-info", "build", "dist", "benchmarks/results"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# Ray's SDK loggers are set to INFO in their modules (so the "ray" logger's level does not
# reach them): "Uploading package ...", "Package ... already exists", "WebSocket closed ...".
SDK_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk")


class ClusterUnreachable(RuntimeError):
    """No Ray job server answers at the address (wrong address, or the cluster is down)."""


def resolve_address(address: str | None) -> str:
    """The job server's URL: ``address``, else ``RAY_ADDRESS``, else the local default.

    A bare ``host:port`` means ``http://host:port``. ``ray://`` (Ray Client) addresses are
    refused with ValueError: the job API is the dashboard's HTTP address (port 8265 by default).
    """
    value = (address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS).strip().rstrip("/")
    if value.startswith("ray://"):
        raise ValueError(f"{value} is a Ray Client address; give the dashboard's address, "
                         f"e.g. http://<head>:8265")
    if "://" not in value:
        value = f"http://{value}"
    if not re.match(r"https?://[^/\s]+$", value):
        raise ValueError(f"--address {value!r}: expected http://HOST:PORT (the Ray dashboard)")
    return value


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer <token>`` when a Ray auth token is configured, else ``{}``."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        with contextlib.suppress(OSError):
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def probe(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The Ray version of the job server at ``url``; ClusterUnreachable naming the fix if none
    answers within ``timeout_s`` (so a dead cluster fails fast, not after TCP's minutes)."""
    request = urllib.request.Request(f"{url}/api/version", headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)["ray_version"]
    except urllib.error.HTTPError as exc:
        hint = {401: " (the cluster wants a token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)",
                403: " (the cluster wants a token: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)",
                404: ": not a Ray dashboard; check the port (Ray's default is 8265)"}.get(
                    exc.code, "")
        raise ClusterUnreachable(f"the Ray job server at {url} answered HTTP {exc.code}"
                                 f"{hint}") from None
    except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClusterUnreachable(
            f"no Ray cluster answers at {url} ({reason}): start one with 'ray start --head', "
            f"or pass --address http://<head>:8265 (or set RAY_ADDRESS)") from None


def connect(address: str | None):
    """A ``JobSubmissionClient`` for ``address`` (see :func:`resolve_address`), checked to
    answer first. ``RAY_ADDRESS`` is hidden from Ray while the client is built, since Ray lets
    it override an explicit address."""
    import logging

    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's upload chatter; errors still show
    for name in SDK_LOGGERS:  # imported with JobSubmissionClient, which set them to INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    url = resolve_address(address)
    probe(url)
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
             if k in os.environ}
    try:
        return JobSubmissionClient(url, headers=auth_headers())
    except (ConnectionError, RuntimeError) as exc:
        raise ClusterUnreachable(f"{url}: {exc}") from None
    finally:
        os.environ.update(saved)


# ---------------------------------------------------------------------------- runtime env
def project_root() -> Path:
    """The source tree that holds this package (the folder with ``pyproject.toml``)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{root} has no pyproject.toml: submit from a checkout of "
                                "catneuron (the job's working_dir is its source tree)")
    return root


def runtime_requirements(root: Path | None = None) -> list[str]:
    """The project's runtime requirements (``[project].dependencies`` of the ``pyproject.toml``
    shipped as the working_dir; the installed distribution's metadata when there is none), as
    pip specifiers, each once; ``ray`` left out (the cluster's own Ray must not be replaced)."""
    pyproject = (root or Path(__file__).resolve().parents[1]) / "pyproject.toml"
    if pyproject.is_file():
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:
        declared = [r for r in metadata.requires("catneuron") or []
                    if "extra ==" not in r.partition(";")[2]]
    out: list[str] = []
    for req in declared:
        name = re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower()
        if name != "ray" and req.strip() not in out:
            out.append(req.strip())
    return out


def runtime_env(*, pip: bool = True, working_dir: Path | None = None) -> dict:
    """The job's runtime environment: the project tree as ``working_dir`` (minus
    :data:`EXCLUDES`) and, unless ``pip`` is False (the cluster's image already holds them), the
    runtime requirements."""
    env: dict = {"working_dir": str(working_dir or project_root()), "excludes": list(EXCLUDES)}
    if pip:
        env["pip"] = runtime_requirements()
    return env


def entrypoint(job: str, args: list[str]) -> str:
    """The shell command a job runs on the cluster: ``python -m jobs.<job> ARGS``."""
    return shlex.join(["python", "-m", f"jobs.{job}", *args])


# ---------------------------------------------------------------------------- following a job
def follow_logs(client, job_id: str, write: Callable[[str], object]) -> None:
    """Stream the job's logs to ``write`` until the job ends (Ray's ``tail_job_logs`` is an
    async generator; it returns when the job reaches a terminal state)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())


def wait_terminal(client, job_id: str, poll_s: float = 1.0,
                  timeout_s: float | None = None) -> str:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED; returns that status."""
    import time

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:g} s")
        time.sleep(poll_s)


def brief_message(message: str | None, limit: int = 300) -> str:
    """A job's status message without the log Ray appends to a failure's ("Job entrypoint
    command failed with exit code 2, last available logs (truncated to 20,000 chars):\n<the
    whole log>"): its first sentence, on one line, at most ``limit`` characters."""
    text = (message or "").split(", last available logs", 1)[0]
    return _clip(next((line.strip() for line in text.splitlines() if line.strip()), ""), limit)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, "..." ending a cut one."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def server_error(text: str, limit: int = 300) -> str:
    """An error of Ray's job server on one line: a Python traceback it sends back ("Request
    failed with status code 500: Traceback (most recent call last): ...") is cut to its first
    words and its last line (the exception), anything else has its lines joined by '; '; at
    most ``limit`` characters."""
    lines = [line.strip() for line in str(text).splitlines()
             if any(ch.isalnum() for ch in line)]
    if not lines:
        return ""
    if any(line.startswith("Traceback (most recent call last)") or
           line.endswith("Traceback (most recent call last):") for line in lines):
        head = lines[0].split("Traceback (most recent call last)", 1)[0].strip()
        message = f"{head} {lines[-1]}".strip()
    else:
        message = "; ".join(lines)
    return _clip(message, limit)


JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")
"""A job id catneuron gives Ray (``--submission-id``): Ray puts it, unescaped, into its URLs
(``/api/jobs/ID``) and into the name of the job's log file on the head node, so a ``/``, ``?``,
``#`` or ``%`` in it makes a job that cannot be looked up, followed or stopped (with a ``/``
Ray records the job, fails to open its log and leaves it PENDING for good)."""

UNADDRESSABLE = re.compile(r"[/?#%\x00-\x1f\x7f]")
"""Characters of a job id that Ray's job API cannot look up (see :data:`JOB_ID`)."""


def describe(info) -> Iterator[str]:
    """``key: value`` lines of a ``JobDetails`` worth showing."""
    import datetime

    def stamp(ms):
        return datetime.datetime.fromtimestamp(ms / 1000).isoformat(" ", "seconds") if ms else ""

    yield f"id:         {info.submission_id or info.job_id}"
    yield f"status:     {info.status.value}"
    yield f"entrypoint: {info.entrypoint}"
    yield f"started:    {stamp(info.start_time)}"
    yield f"ended:      {stamp(info.end_time)}"
    if info.message:
        brief = brief_message(info.message)
        if brief != info.message.strip():  # the log Ray appended: shown by 'jobs logs'
            brief += f" (its logs: catneuron jobs logs {info.submission_id or info.job_id})"
        yield f"message:    {brief}"
