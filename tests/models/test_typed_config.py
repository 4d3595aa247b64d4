"""models.typed_config: configs from plain dicts, every value checked, errors name the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from models.typed_config import ConfigError, build, to_dict


@dataclass(frozen=True)
class Inner:
    size: int = 3
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size={self.size} must be >= 1")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    mode: Literal["sync", "async"] = "async"
    flag: bool = False
    seed: int | None = None
    pair: tuple[int, int] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    stages: tuple[Inner, ...] = ()


def test_defaults_and_a_full_round_trip():
    assert build(Outer, {}) == Outer()
    cfg = build(Outer, {"name": "run", "mode": "sync", "flag": True, "seed": 4, "pair": [5, 6],
                        "inner": {"size": 2}, "stages": [{"size": 7, "scale": 2}]})
    assert cfg == Outer("run", "sync", True, 4, (5, 6), Inner(2), (Inner(7, 2.0),))
    assert build(Outer, to_dict(cfg)) == cfg
    assert isinstance(cfg.stages[0].scale, float)  # an integer in a float field becomes a float


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nmae": "x"}, "unknown key nmae in Outer; valid keys: name, mode"),
        ({"inner": {"sise": 2}}, "unknown key inner.sise"),
        ({"mode": "fast"}, "mode='fast': must be one of 'sync', 'async'"),
        ({"flag": 1}, "flag=1: expected true or false"),
        ({"seed": True}, "seed=True: expected an integer"),
        ({"seed": "4"}, "seed='4': expected an integer"),
        ({"pair": [1]}, "pair: expected 2 items, got 1"),
        ({"pair": "12"}, "pair='12': expected a list"),
        ({"inner": 3}, "inner: expected a table of Inner fields"),
        ({"inner": {"scale": float("nan")}}, "inner.scale=nan: expected a finite number"),
        ({"stages": [{}, {"size": "big"}]}, "stages[1].size='big': expected an integer"),
        ({"stages": [{"size": 0}]}, "stages[0]: size=0 must be >= 1"),
        ({"name": 5}, "name=5: expected a string"),
    ],
)
def test_each_bad_value_names_its_field(data, message):
    with pytest.raises(ConfigError) as exc:
        build(Outer, data)
    assert message in str(exc.value)


def test_input_is_not_modified():
    data = {"stages": [{"size": 7}], "pair": [5, 6]}
    build(Outer, data)
    assert data == {"stages": [{"size": 7}], "pair": [5, 6]}


@dataclass(frozen=True)
class Loose:
    sizes: list[int] = field(default_factory=list)
    either: int | str = 0
    anything: Any = None


def test_lists_unions_and_any():
    cfg = build(Loose, {"sizes": [1, 2], "either": "two", "anything": {"a": [1]}})
    assert cfg.sizes == [1, 2] and isinstance(cfg.sizes, list)  # a list field stays a list
    assert cfg.either == "two" and cfg.anything == {"a": [1]}
    assert to_dict(build(Outer, {"pair": [3, 4], "stages": [{"size": 2}]}))["stages"] == [
        {"size": 2, "scale": 1.0}]
    with pytest.raises(ConfigError, match=r"either=1.5: wrong type"):
        build(Loose, {"either": 1.5})
    with pytest.raises(ConfigError, match=r"sizes\[1\]='x': expected an integer"):
        build(Loose, {"sizes": [1, "x"]})
