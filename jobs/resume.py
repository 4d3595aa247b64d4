"""What ``catneuron train --resume`` continues, and what it may change.

A resumed run loads its own resolved config, ``RUN/config.toml`` (written when the run started),
never the built-in defaults or another file. Command-line overrides are applied on top of it, but
only to fields that do not change what the checkpoints hold (the model, the optimiser, the
number of workers and shards, the schedule): how long to train, how often to log and checkpoint,
where to compute, where the run folder and the (same) dataset now are, and the local-simulation
settings. Any other change is refused before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.config import ConfigError, JobConfig, load, to_dict
from pipeline import storage

RUN_CONFIG = "config.toml"

SAFE_ON_RESUME = (
    "train.steps", "train.stages", "train.checkpoint_every", "train.log_interval",
    "train.max_in_flight", "train.device", "train.run_dir", "train.placement_timeout_s",
    "data.path", "sim.*",
)
"""Fields a resumed run may change (``sim.*``: every local-simulation setting)."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"section.key": value}`` (lists kept whole)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def _is_safe(key: str) -> bool:
    return any(key == s or (s.endswith(".*") and key.startswith(s[:-1])) for s in SAFE_ON_RESUME)


def changed_fields(saved: JobConfig, resumed: JobConfig) -> list[str]:
    """Dotted names of the fields whose values differ between two configs, sorted."""
    a, b = _flat(to_dict(saved)), _flat(to_dict(resumed))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def load_run_config(run_dir: str | Path, overrides: list[str]) -> JobConfig:
    """The run's own ``RUN/config.toml`` with the safe ``overrides`` applied.

    Raises
    ------
    ConfigError
        No run in ``run_dir``, or an override changes a field not in :data:`SAFE_ON_RESUME`.
    """
    path = storage.join(str(run_dir), RUN_CONFIG)
    if not storage.exists(path):
        raise ConfigError(f"--resume: {run_dir} holds no run to continue (no {RUN_CONFIG}): "
                          "check --run-dir, or start a new run without --resume")
    saved = load(path)
    resumed = load(path, [*overrides, f"train.run_dir={_toml_str(str(run_dir))}"])
    unsafe = [k for k in changed_fields(saved, resumed) if not _is_safe(k)]
    if unsafe:
        key = unsafe[0]
        old, new = _flat(to_dict(saved)).get(key), _flat(to_dict(resumed)).get(key)
        raise ConfigError(
            f"--resume cannot change {key} (the run has {old!r}, asked {new!r}): its checkpoints "
            f"depend on it; start a new --run-dir to train with it")
    return resumed


def _toml_str(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
