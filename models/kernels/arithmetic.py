"""What, beyond the code, the config and the seed, decides a process's float rounding: its
*arithmetic*, recorded so that two runs can tell whether they should agree bit for bit.

torch and numba pick their kernels by the CPU they find when they start: ATen's vectorised
kernels by instruction set (``ATEN_CPU_CAPABILITY``), MKL's products and FFTs by CPU vendor and
instruction set (``MKL_CBWR``), oneDNN's convolutions by instruction set
(``ONEDNN_MAX_CPU_ISA``), numba's compiled loops by the host CPU LLVM targets
(``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``). Each choice changes how sums are split and
fused, so the same program trains other parameters on another CPU; k-means and one-of-K
assignments then flip, and the difference grows from rounding to a different model
(``benchmarks/isa_dependence.py`` measures it by pinning each of them lower on one machine).
Thread counts matter too; the code fixes those itself (``cluster.stage.PREPARE_THREADS``, the
workers' compute threads). On a GPU the device's own kernels decide instead; a fingerprint
describes the CPU side only.

A fingerprint names the CPU, the library versions, the kernels chosen and any of those
variables the user set: equal fingerprints (and thread counts) give equal results; different
ones may not.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

PINS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
        "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
"""Environment variables that change which kernels the libraries choose."""


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` says)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def numba_target() -> str:
    """The CPU numba compiles for: ``NUMBA_CPU_NAME`` when set, else the host's LLVM name."""
    from numba.core import config

    if config.CPU_NAME:
        return str(config.CPU_NAME)
    import llvmlite.binding as ll

    return str(ll.get_host_cpu_name())


FIELDS = ("cpu", "torch", "aten", "numba", "pins")
"""What a fingerprint names, each a string."""


def is_fingerprint(obj) -> bool:
    """Whether ``obj`` (e.g. read from a file) is a whole fingerprint: every :data:`FIELDS` a
    string."""
    return isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in FIELDS)


def fingerprint() -> dict[str, str]:
    """This process's arithmetic: ``cpu``, ``torch`` (version), ``aten`` (the kernels ATen
    chose, e.g. ``AVX2``), ``numba`` (version and target CPU) and ``pins`` (the :data:`PINS`
    set, as ``NAME=value`` joined by spaces; empty when none)."""
    import numba
    import torch

    pins = " ".join(f"{name}={os.environ[name]}" for name in PINS if name in os.environ)
    return {"cpu": cpu_model(), "torch": torch.__version__,
            "aten": torch.backends.cpu.get_cpu_capability(),
            "numba": f"{numba.__version__} {numba_target()}", "pins": pins}


def describe(fp: dict[str, str]) -> str:
    """One line: ``AMD EPYC, torch 2.13.0 AVX2, numba 0.68.1 znver3 (pinned: MKL_CBWR=AVX2)``."""
    line = f"{fp['cpu']}, torch {fp['torch']} {fp['aten']}, numba {fp['numba']}"
    return line + (f" (pinned: {fp['pins']})" if fp.get("pins") else "")


def processes_line(named: list[tuple[str, dict[str, str]]]) -> str:
    """``(process name, fingerprint)`` pairs as one line, the processes that share an
    arithmetic together: ``AMD EPYC, torch 2.13.0 AVX2, ... (driver, shard 0, worker 0,
    worker 1)``, groups joined by ``; `` in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name, fp in named:
        groups.setdefault(describe(fp), []).append(name)
    return "; ".join(f"{line} ({', '.join(names)})" for line, names in groups.items())
