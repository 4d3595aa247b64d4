"""The arithmetic fingerprint: it must follow what the libraries were told to choose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from models.kernels.arithmetic import PINS, cpu_model, describe, fingerprint, processes_line


def test_the_cpu_model_is_read_from_cpuinfo_and_has_a_fallback(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n")
    assert cpu_model(info) == "AMD EPYC 9B14"
    assert cpu_model(tmp_path / "missing")  # platform's answer, never empty


def fingerprint_in_a_process(**env: str) -> dict:
    """The fingerprint a fresh process gives with ``env`` added (and no other pin set)."""
    clean = {k: v for k, v in os.environ.items() if k not in PINS}
    out = subprocess.run(
        [sys.executable, "-c", "import json; from models.kernels.arithmetic import "
                               "fingerprint; print(json.dumps(fingerprint()))"],
        env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_pinned_instruction_set_shows_in_the_fingerprint():
    """ATen's kernels without AVX and numba compiling for a generic x86-64: the fingerprint
    says what the libraries then use, not the host's own choice, and names the pins."""
    own, pinned = fingerprint_in_a_process(), fingerprint_in_a_process(
        ATEN_CPU_CAPABILITY="default", NUMBA_CPU_NAME="generic")
    assert own["pins"] == "" and own["aten"] and own["numba"].split()[-1] != "generic"
    assert pinned["aten"] == "DEFAULT" and pinned["numba"].endswith(" generic")
    assert pinned["pins"] == "ATEN_CPU_CAPABILITY=default NUMBA_CPU_NAME=generic"
    assert pinned["cpu"] == own["cpu"] and pinned["torch"] == own["torch"]
    assert describe(pinned).endswith(
        "(pinned: ATEN_CPU_CAPABILITY=default NUMBA_CPU_NAME=generic)")


def test_processes_with_one_arithmetic_share_a_group():
    fp = fingerprint()
    other = {**fp, "aten": "AVX2" if fp["aten"] != "AVX2" else "AVX512"}  # differs on any host
    line = processes_line([("driver", fp), ("shard 0", other), ("worker 0", fp)])
    assert line == f"{describe(fp)} (driver, worker 0); {describe(other)} (shard 0)"
