"""Keeping freed memory: a repeated large op reuses its block instead of faulting pages in."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Minor page faults of the fourth of four identical 64 MB elementwise ops, in a fresh process.
# The steady state is what a training loop sees: in about one fresh process in ten the second op
# still faults its result in (something in the process takes the freed block first), never a
# later one; glibc's default maps and faults a block this large in on every op.
PROBE = """
import json, resource, sys
import torch
import models  # noqa: F401  (the package sets the allocator up on import)
from models.kernels.allocator import keep_freed_memory
x = torch.ones(4096, 4096)
for _ in range(3):
    x * 2
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
y = x * 2
print(json.dumps({"kept": keep_freed_memory(),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
                  "value": float(y[0, 0])}))
"""


def probe(setting: str) -> dict:
    env = {**os.environ, "CATNEURON_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_importing_models_keeps_freed_memory():
    kept, default = probe(""), probe("default")
    assert kept["kept"] and not default["kept"]
    pages = 4096 * 4096 * 4 // 4096  # one fault per 4 KiB page of the 64 MB result
    assert default["faults"] > pages // 2  # glibc maps and faults the result in every time
    assert kept["faults"] < pages // 100  # the freed block is reused
    assert kept["value"] == default["value"] == 2.0
