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

from jobs.config import ConfigError, JobConfig, load, loads, to_dict, toml_string
from pipeline import storage

RUN_CONFIG = "config.toml"

SAFE_ON_RESUME = (
    "train.steps", "train.stages", "train.checkpoint_every", "train.keep_checkpoints",
    "train.log_interval",
    "train.max_in_flight", "train.sync_transport", "train.device", "train.run_dir",
    "train.placement_timeout_s", "train.frame_cache_mb",
    "data.path", "sim.*",
)
"""Fields a resumed run may change (``sim.*``: every local-simulation setting)."""


def flat_fields(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists of tables as ``{"section.key": value}``, ``model.stages[0].field``
    for a table in a list (lists of plain values kept whole)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat_fields(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(d, (list, tuple)) and any(isinstance(v, dict) for v in d):
        out = {}
        for i, v in enumerate(d):
            out.update(flat_fields(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


def _is_safe(key: str) -> bool:
    return any(key == s or (s.endswith(".*") and key.startswith(s[:-1])) for s in SAFE_ON_RESUME)


def changed_fields(saved: JobConfig, resumed: JobConfig) -> list[str]:
    """Dotted names of the fields whose values differ between two configs, sorted."""
    a, b = flat_fields(to_dict(saved)), flat_fields(to_dict(resumed))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def load_run_config(run_dir: str | Path, overrides: list[str]) -> JobConfig:
    """The run's own ``RUN/config.toml`` with the safe ``overrides`` applied.

    Raises
    ------
    ConfigError
        No run in ``run_dir``, or an override changes a field not in :data:`SAFE_ON_RESUME`.
    pipeline.storage.LocationError
        ``run_dir`` is a URI with a ``..``, or in a bucket that is missing or refuses writes.
    """
    storage.check_location(run_dir, write=True)
    path = storage.join(str(run_dir), RUN_CONFIG)
    if not storage.exists(path):
        raise ConfigError(f"--resume: {run_dir} holds no run to continue (no {RUN_CONFIG}): "
                          "check --run-dir, or start a new run without --resume")
    try:
        saved = load(path)
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
                          ) from None
    trained = trained_config(run_dir)
    edited = [] if trained is None else [k for k in changed_fields(trained, saved)
                                         if not _is_safe(k)]
    if edited:
        raise ConfigError(f"{path} was edited since its checkpoints were written: "
                          f"{_changes(trained, saved, edited)}; --resume cannot change them "
                          "(undo the edit, or start a new --run-dir)")
    resumed = load(path, [*overrides, f"train.run_dir={toml_string(str(run_dir))}"])
    unsafe = [k for k in changed_fields(saved, resumed) if not _is_safe(k)]
    if unsafe:
        raise ConfigError(f"--resume cannot change {_changes(saved, resumed, unsafe)}: the "
                          "run's checkpoints depend on them; start a new --run-dir to train "
                          "with them")
    return resumed


def trained_config(run_dir: str | Path) -> JobConfig | None:
    """The config the run's newest checkpoint was written with (its ``meta.pt``: the stage
    furthest on), else the one in ``model.pt``; None for a run that wrote neither."""
    from cluster.checkpoint import latest_checkpoint, read_meta
    from cluster.state_io import read_state
    from models.state_file import holding

    root = storage.join(str(run_dir), "checkpoints")
    stages = sorted((int(n[5:]) for n in storage.list_dirs(root)
                     if n.startswith("stage") and n[5:].isdigit()), reverse=True)
    for stage in stages:
        folder = latest_checkpoint(storage.join(root, f"stage{stage}"))
        if folder is not None:
            return loads(read_meta(folder)["config"], where=storage.join(folder, "meta.pt"))
    model = storage.join(str(run_dir), "model.pt")
    if not storage.exists(model):
        return None
    saved = holding(read_state(model), ("job_config",), model)
    return loads(saved["job_config"], where=model) if isinstance(saved["job_config"], str) else None


def _changes(saved: JobConfig, resumed: JobConfig, keys: list[str], n: int = 4) -> str:
    """``key (old -> new), ...`` for the first ``n`` keys, then how many more."""
    a, b = flat_fields(to_dict(saved)), flat_fields(to_dict(resumed))

    def short(value: Any) -> str:
        text = "unset" if value is None else repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    parts = [f"{k} ({short(a.get(k))} -> {short(b.get(k))})" for k in keys[:n]]
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(parts) + more
