"""Job configs: per-component frozen dataclasses composed into one job config.

Precedence (minGPT / torchtitan style): dataclass defaults < the TOML file < ``--section.key=value``
overrides on the command line. Every value is checked against its field's type annotation on the
way in: unknown keys, wrong types and impossible geometry raise :class:`ConfigError` naming the
field (``train.n_workers``, ``model.stages[0].field``), before anything else starts. The resolved
config is written back as TOML (:func:`dumps`) into the run folder and into every checkpoint, so
``catneuron train --config RUN/config.toml`` reproduces a run.

The model and optimiser sections are the models package's own dataclasses (``StackConfig``,
``UpdateConfig``); data, training schedule and local-simulation sections are defined here, next to
the code they configure (``cluster/``).
"""

from __future__ import annotations

import math
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

from cluster.config import DataConfig, SimConfig, TrainConfig
from models.optim import UpdateConfig
from models.stack import StackConfig, StageConfig


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the field and says what to do."""


@dataclass(frozen=True)
class JobConfig:
    """The whole job: one section per component (``[data]``, ``[model]``, ``[update]``,
    ``[train]``, ``[sim]`` in TOML)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: StackConfig = field(default_factory=lambda: _default_stack())
    update: UpdateConfig = field(default_factory=UpdateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sim: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self) -> None:
        n_stages = len(self.model.stages)
        if self.train.stages > n_stages:
            raise ValueError(
                f"train.stages={self.train.stages} > the {n_stages} stage(s) in model.stages")
        for name in ("kill_worker", "slow_worker"):
            if getattr(self.sim, name) >= self.train.n_workers:
                raise ValueError(f"sim.{name}={getattr(self.sim, name)} >= train.n_workers="
                                 f"{self.train.n_workers}")
        if self.sim.kill_shard >= self.train.n_ps_shards:
            raise ValueError(f"sim.kill_shard={self.sim.kill_shard} >= train.n_ps_shards="
                             f"{self.train.n_ps_shards}")

    @property
    def n_stages(self) -> int:
        """Stages trained by this job."""
        return self.train.stages or len(self.model.stages)


def _default_stack() -> StackConfig:
    """The demo stack when a config file has no ``[model]`` section (64x64 grey frames)."""
    return StackConfig(input_size=64, channels=1, stages=(
        StageConfig(field=10, stride=2, n_maps=8, pool=3, pool_stride=2),
        StageConfig(field=5, stride=1, n_maps=8, pool=3, pool_stride=1)))


# --------------------------------------------------------------------------------------------
# Building dataclasses from plain dicts, checking types on the way in.


def _check_value(tp: Any, value: Any, path: str) -> Any:
    """``value`` (from TOML/CLI) as annotation ``tp``, or ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a table of {tp.__name__} fields, got {value!r}")
        return build(tp, value, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}={value!r}: must be one of {', '.join(map(repr, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}={value!r}: wrong type ({tp})")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r}: expected a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            items = [_check_value(a, v, f"{path}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_check_value(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r}: expected a number")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{path}={value!r}: expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r}: expected a string")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}={value!r}: expected {getattr(tp, '__name__', tp)}")


def build(cls: type, data: Mapping[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    Missing keys take the dataclass defaults. Errors raised by ``__post_init__`` (geometry checks)
    are re-raised as ConfigError prefixed with the section path.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]} in {cls.__name__}; valid keys: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _check_value(hints[name], data[name], f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """A dataclass as plain dicts/lists (what :func:`build` accepts back)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# TOML in and out, command-line overrides.


def _parse_override_value(text: str) -> Any:
    """A CLI value as TOML (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _split_key(key: str) -> list[str | int]:
    """``model.stages[0].field`` or ``model.stages.0.field`` -> ['model', 'stages', 0, 'field']."""
    parts: list[str | int] = []
    for token in key.replace("]", "").replace("[", ".").split("."):
        if token == "":
            raise ConfigError(f"override key {key!r} is malformed; use --section.key=value")
        parts.append(int(token) if token.isdigit() else token)
    return parts


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested dict (a copy), TOML-typed values."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"override {item!r} needs a value: --section.key=value")
        key, raw = text.split("=", 1)
        parts = _split_key(key.strip())
        if len(parts) < 2:
            raise ConfigError(
                f"override {item!r}: name a section and a key, e.g. --train.steps=100")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(f"override {key}: index {part} is out of range")
                node = node[part]
                continue
            if part not in node:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError(f"override {key}: index {last} is out of range")
        node[last] = _parse_override_value(raw.strip())
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: nested tables merged key by key, everything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> JobConfig:
    """Defaults < TOML file at ``path`` (may be None) < overrides; validated ``JobConfig``.

    Raises
    ------
    ConfigError
        Unknown key, wrong type or impossible value, with the field's dotted name.
    FileNotFoundError
        ``path`` does not exist.
    """
    data: dict[str, Any] = {}
    if path is not None:
        from pipeline import storage  # a path or URI (a run folder's config.toml in S3)

        p = str(path)
        if not storage.exists(p):
            raise FileNotFoundError(f"config file {p} not found (see configs/demo.toml)")
        try:
            data = tomllib.loads(storage.read_text(p))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    data = _merge(to_dict(JobConfig()), data)  # file over defaults (tables merged, lists replaced)
    data = apply_overrides(data, overrides)
    return build(JobConfig, data)


def _toml_scalar(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        raise ConfigError("None cannot be written to TOML")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def dumps(config: Any) -> str:
    """The resolved config as TOML (sections, and arrays of tables for lists of tables)."""
    lines: list[str] = ["# resolved catneuron config (defaults < file < command line)"]

    def table(prefix: str, d: dict[str, Any], header: str) -> None:
        scalars = {k: v for k, v in d.items() if v is not None and not isinstance(v, dict)
                   and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        lines.append("")
        lines.append(header)
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_scalar(v)}")
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v, f"[{name}]")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    table(name, item, f"[[{name}]]")

    data = to_dict(config)
    for section, values in data.items():
        table(section, values, f"[{section}]")
    return "\n".join(lines) + "\n"


def loads_dict(text: str) -> dict[str, Any]:
    """Parse TOML text (for checkpoints that carry the config)."""
    return tomllib.loads(text)


def replace(config: JobConfig, **sections: Mapping[str, Any]) -> JobConfig:
    """A copy of ``config`` with some fields of some sections changed, validated again."""
    data = to_dict(config)
    for section, values in sections.items():
        data[section].update(values)
    return build(JobConfig, data)


__all__ = [
    "ConfigError", "DataConfig", "TrainConfig", "SimConfig", "JobConfig", "build", "load",
    "dumps", "to_dict", "apply_overrides", "replace",
]
