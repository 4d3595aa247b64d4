"""Frozen dataclass configs from plain dicts (TOML, JSON, a checkpoint), checked on the way in.

Every value is checked against its field's type annotation: unknown keys, wrong types and
values a config's ``__post_init__`` refuses raise :class:`ConfigError` naming the field
(``train.n_workers``, ``model.stages[0].field``). The job config (``jobs.config``) and
``StackConfig.from_dict`` (a model file's saved geometry) share this one builder.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the field and says what to do."""


INT64 = (-(2**63), 2**63 - 1)
"""TOML's integers (the spec: 64-bit, signed). ``tomllib`` reads any length; a longer one would
fail later, in ``float()`` or numpy, with a traceback instead of a line naming the field."""


def _check_int_range(value: int, path: str) -> None:
    """ConfigError naming ``path`` for an integer past TOML's 64 bits (not printed whole)."""
    if not INT64[0] <= value <= INT64[1]:
        raise ConfigError(f"{path}: an integer of {len(str(abs(value)))} digits is past "
                          "TOML's 64-bit range (-2**63 to 2**63 - 1)")


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
        _check_int_range(value, path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r}: expected a number")
        if isinstance(value, int):
            _check_int_range(value, path)
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
