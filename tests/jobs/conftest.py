"""Shared fixtures of the job tests: one `catneuron demo --fast` run per session."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DemoRun:
    """A finished fast demo in ``out``, and what its two invocations printed."""

    out: Path
    interrupted: subprocess.CompletedProcess
    continued: subprocess.CompletedProcess


def sigint_restored() -> None:
    """``preexec_fn`` of a process a test will send SIGINT (Ctrl-C): SIGINT back to its default,
    so Python installs its KeyboardInterrupt handler even when pytest runs in the background of a
    non-interactive shell (``cmd &``), where SIGINT is ignored for every process it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def demo_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "demo", "--fast", "--out", str(out)]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """`catneuron demo --fast`, interrupted (SIGINT, as Ctrl-C) once stage 0 has written a
    checkpoint past its start (its step depends on the stage's push period: a chunk ends with a
    push), then run again to the end. Stage 0 of the fast demo is short: on a busy machine the
    signal can land after it, while stage 1 starts."""
    out = tmp_path_factory.mktemp("demo")
    first = subprocess.Popen(demo_command(out), cwd=REPO, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, preexec_fn=sigint_restored)
    stage0 = out / "train" / "checkpoints" / "stage0"

    def checkpointed() -> bool:
        return any(p.name != "step00000000" for p in stage0.glob("step*"))

    while not checkpointed() and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    stdout, _ = first.communicate(timeout=300)
    interrupted = subprocess.CompletedProcess(first.args, first.returncode, stdout)
    continued = subprocess.run(demo_command(out), cwd=REPO, text=True, timeout=900,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return DemoRun(out, interrupted, continued)


@pytest.fixture(scope="session")
def ray_head():
    """A real one-node Ray cluster on 127.0.0.1 (``ray start --head`` in its own process group
    and temp dir, :mod:`tests.cluster.raycluster`), for ``catneuron submit`` / ``catneuron
    jobs``; killed at the end (never ``ray stop``)."""
    from tests.cluster.raycluster import remove, start_cluster

    cluster = start_cluster()
    yield cluster
    remove(cluster)
