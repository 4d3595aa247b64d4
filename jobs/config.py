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

import importlib.resources
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

from cluster.config import DataConfig, SimConfig, TrainConfig
from models.rbm.optim import UpdateConfig
from models.stack import StackConfig, StageConfig
from models.typed_config import ConfigError, build, to_dict
from pipeline.ingest import IngestConfig


@dataclass(frozen=True)
class JobConfig:
    """The whole job: one section per component (``[ingest]``, ``[data]``, ``[model]``,
    ``[update]``, ``[train]``, ``[sim]`` in TOML). ``catneuron ingest`` reads ``[ingest]``
    (``[ingest.decode]``, ``[ingest.shards]``, ``[ingest.fetch]``), ``catneuron train`` the
    rest."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
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
        lengths = self.train.per_stage_lengths()
        if lengths and min(lengths) < n_stages:
            raise ValueError(f"train: the periods given per stage have {min(lengths)} "
                             f"entries; give one per stage of model.stages ({n_stages})")
        if self.sim.kill_shard >= self.train.n_ps_shards:
            raise ValueError(f"sim.kill_shard={self.sim.kill_shard} >= train.n_ps_shards="
                             f"{self.train.n_ps_shards}")
        self._check_shards()

    def _check_shards(self) -> None:
        """Every trained stage splits into at least ``train.n_ps_shards`` rows."""
        from cluster.plan import shard_rows

        for stage in range(self.n_stages):
            rows = shard_rows(self.model, stage)
            if self.train.n_ps_shards > rows:
                raise ValueError(f"train.n_ps_shards={self.train.n_ps_shards}: stage {stage}'s "
                                 f"parameters split into only {rows} rows (positions, maps or "
                                 f"units); use at most {rows} shards")

    @property
    def n_stages(self) -> int:
        """Stages trained by this job."""
        return self.train.stages or len(self.model.stages)

    def for_stage(self, stage: int) -> JobConfig:
        """This job as stage ``stage`` runs it: ``train`` with that stage's periods
        (:meth:`cluster.config.TrainConfig.for_stage`)."""
        return replace(self, train=self.train.for_stage(stage))


def _default_stack() -> StackConfig:
    """The library's default geometry when a config has no ``[model]`` section: two stages on
    64x64 grey frames. (The demo is ``configs/demo.toml``, not these defaults.)"""
    return StackConfig(input_size=64, channels=1, stages=(
        StageConfig(field=10, stride=2, n_maps=8, pool=3, pool_stride=2),
        StageConfig(field=5, stride=1, n_maps=8, pool=3, pool_stride=1)))


# --------------------------------------------------------------------------------------------
# TOML in and out, command-line overrides.


def _parse_override_value(text: str) -> Any:
    """A CLI value as TOML (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


OVERRIDE_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\.[0-9]+|\[[0-9]+\])*", re.ASCII)
"""``section.key``, with ``[i]`` or ``.i`` indexing a list of tables (ASCII digits only)."""


def _split_key(key: str) -> list[str | int]:
    """``model.stages[0].field`` or ``model.stages.0.field`` -> ['model', 'stages', 0, 'field']."""
    if not OVERRIDE_KEY.fullmatch(key):
        raise ConfigError(f"override key {key!r} is malformed; use --section.key=value "
                          "(a list index as [0])")
    tokens = key.replace("]", "").replace("[", ".").split(".")
    return [int(t) if t.isdigit() else t for t in tokens]


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
                    raise _bad_index(key, parts[:i], node, part)
                node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {parts[i - 1]} holds no key {part!r}")
            if part not in node and isinstance(nxt, int):
                raise ConfigError(f"override {key}: unknown key {part!r}, or one the config "
                                  f"leaves at its default: no list to index; give it whole "
                                  f"(--{_dotted(parts[:i + 1])}=[...])")
            if part not in node:
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise _bad_index(key, parts[:-1], node, last)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {key}: {parts[-2]} holds no key {last!r}")
        node[last] = _parse_override_value(raw.strip())
    return data


def _dotted(parts: Sequence[str | int]) -> str:
    """['model', 'stages', 0, 'sizes'] -> ``model.stages[0].sizes``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _bad_index(key: str, where: Sequence[str | int], node: Any, index: int) -> ConfigError:
    """The error for ``[index]`` into ``node`` (at ``where``): a value that is no list says so
    (``--train.n_fetch[1]=4`` on ``n_fetch = 1`` is not "out of range"), a list its length."""
    name = _dotted(where)
    if not isinstance(node, list):
        shown = "a table" if isinstance(node, dict) else repr(node)
        return ConfigError(f"override {key}: {name} is {shown}, not a list to index; give it "
                           f"whole (--{name}=...)")
    return ConfigError(f"override {key}: index {index} is out of range ({name} has "
                       f"{len(node)} entries)")


def shortcut_overrides(shortcuts: Mapping[str, str], values: Mapping[str, Any],
                       overrides: Sequence[str]) -> list[str]:
    """``overrides`` plus one ``key=value`` per shortcut flag given (``values[name]`` not None).

    ``shortcuts`` maps a flag's name to its config key. A flag and an override of its own key
    with a different value raise ConfigError (one precedence: there is nothing to choose).
    """
    out = list(overrides)
    for name, key in shortcuts.items():
        value = values.get(name)
        if value is None:
            continue
        given = apply_overrides({}, [f"{key}={_toml_scalar(value)}"])
        for item in overrides:
            if item.removeprefix("--").split("=", 1)[0].strip() != key:
                continue
            if apply_overrides({}, [item]) != given:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {value} and {item} disagree: give only one of them")
        out.append(f"{key}={_toml_scalar(value)}")
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: nested tables merged key by key, everything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


SHIPPED = ("demo", "le2012")


def shipped_config(name: str) -> Path:
    """The file of a shipped config (``demo``, ``le2012``): package data of :mod:`configs`,
    found the same way from a checkout and from an installed catneuron."""
    if name not in SHIPPED:
        raise ConfigError(f"no shipped config named {name!r}: use one of {', '.join(SHIPPED)} "
                          "or a path to a .toml file")
    return Path(str(importlib.resources.files("configs") / f"{name}.toml"))


def is_bare_name(text: str) -> bool:
    """Whether a ``--config`` value names a shipped config rather than a file: no ``.toml``
    ending and no path separator (``demo``; not ``demo.toml``, ``./demo`` or ``s3://b/x``)."""
    separators = {"/", os.sep, os.altsep or "/"}
    return not text.endswith(".toml") and not any(s in text for s in separators)


def config_path(path: str | os.PathLike) -> str:
    """The file of the shipped config a bare name names (``demo``, ``le2012``: whatever the
    current folder holds, such as the ``demo`` folder ``catneuron demo --out demo`` writes),
    else ``path`` itself (a path or URI). ConfigError for a bare name that is not shipped."""
    text = os.fspath(path)
    if not is_bare_name(text):
        return text
    if text not in SHIPPED:
        raise ConfigError(f"--config {text}: no shipped config has that name (shipped: "
                          f"{', '.join(SHIPPED)}); a config file is named with .toml or a path "
                          f"(./{text})")
    return str(shipped_config(text))


def upgrade_names(data: dict[str, Any]) -> dict[str, Any]:
    """A config file written before ``[ingest.decode]`` used the model's names (a run folder's
    ``config.toml``, a dataset's ``_config.toml``): ``size`` -> ``input_size``, ``grey = true |
    false`` -> ``channels = 1 | 3``. Other keys are left to the type checks."""
    from pipeline.decode import renamed_options

    ingest = data.get("ingest")
    if isinstance(ingest, dict) and isinstance(ingest.get("decode"), dict):
        ingest["decode"] = renamed_options(ingest["decode"])
    return data


def load(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> JobConfig:
    """Defaults < TOML file at ``path`` (a path, or a shipped name such as ``"demo"``; may be
    None) < overrides; validated ``JobConfig``.

    Raises
    ------
    ConfigError
        Unknown key, wrong type or impossible value, with the field's dotted name; a file that
        cannot be read.
    FileNotFoundError
        ``path`` does not exist.
    """
    if path is not None:
        p = config_path(path)
        text = _read_config(p)
        if text is None:
            if os.path.isdir(p):
                raise ConfigError(f"config file {p} is a folder: name the .toml file in it")
            raise FileNotFoundError(f"config file {p} not found (the shipped ones are "
                                    "configs/demo.toml and le2012.toml: --config demo)")
        return loads(text, overrides, where=str(p))
    return loads("", overrides)


def _read_config(p: str) -> str | None:
    """The text of the config file at ``p`` (a path or URI), None where there is none; a
    leading UTF-8 byte-order mark is dropped.

    Any other failure to read it (no permission, a name too long, a store that does not answer)
    is ConfigError naming the file: the user's to fix, one line, not an OSError's traceback.
    """
    from pipeline import storage  # a path or URI (a run folder's config.toml in S3)

    try:
        storage.check_location(p)  # a URI's bucket exists and answers (LocationError)
        text = storage.read_text(p) if storage.exists(p) else None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file (a TOML config is)") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())
        raise ConfigError(f"config file {p} cannot be read: {reason}") from None
    # a byte-order mark (editors on Windows write one) is no TOML: tomllib stops at it
    return None if text is None else text.removeprefix("\ufeff")


def loads(text: str, overrides: Sequence[str] = (), where: str = "config") -> JobConfig:
    """Defaults < the TOML ``text`` < overrides; validated ``JobConfig`` (ConfigError, the
    invalid TOML named by ``where``)."""
    try:
        data = upgrade_names(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    data = _merge(to_dict(JobConfig()), data)  # file over defaults (tables merged, lists replaced)
    data = apply_overrides(data, overrides)
    return build(JobConfig, data)


def toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped (a newline
    in a path would otherwise make the run's own config.toml unreadable)."""
    def escape(ch: str) -> str:
        if ch in '\\"':
            return "\\" + ch
        return f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch

    return '"' + "".join(escape(ch) for ch in text) + '"'


def _toml_scalar(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
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


__all__ = [
    "ConfigError", "DataConfig", "TrainConfig", "SimConfig", "JobConfig", "build", "load", "loads",
    "dumps", "to_dict", "apply_overrides", "shipped_config", "config_path", "shortcut_overrides",
]
