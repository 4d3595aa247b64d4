"""State files hold data, never code: a crafted ``model.pt`` is refused and runs nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from models.stack import RBMStack, StackConfig, StageConfig
from models.state_file import UnsafeStateFile, load_state, save_state


class _RunsCode:
    """Pickles as a call to ``os.system`` (what a crafted checkpoint would carry)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _stack() -> RBMStack:
    cfg = StackConfig(input_size=12, channels=1,
                      stages=(StageConfig(field=4, stride=2, n_maps=2, pool=2),))
    return RBMStack(cfg, generator=torch.Generator().manual_seed(0), device="cpu")


def test_stack_round_trip_loads_with_weights_only(tmp_path):
    stack = _stack()
    stack.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)  # plain types only
    assert isinstance(blob["config"], dict)
    again = RBMStack.load(tmp_path / "model.pt")
    for name, p in stack.rbms[0].params.items():
        assert torch.equal(p, again.rbms[0].params[name])


def test_a_crafted_model_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    stack = _stack()
    torch.save({"config": stack.config.to_dict(), "state": _RunsCode(marker)},
               tmp_path / "model.pt")
    with pytest.raises(UnsafeStateFile, match=r"model\.pt holds more than tensors.*posix\.system"):
        RBMStack.load(tmp_path / "model.pt")
    assert not marker.exists()


def test_save_state_stores_numpy_as_tensors_and_refuses_objects(tmp_path):
    save_state({"q": np.arange(3.0), "n": np.int64(4), "rows": [(1, 2)], "none": None},
               tmp_path / "s.pt")
    back = load_state(tmp_path / "s.pt")
    assert torch.equal(back["q"], torch.arange(3.0, dtype=torch.float64))
    assert back["n"] == 4 and back["rows"] == [(1, 2)] and back["none"] is None
    with pytest.raises(TypeError, match=r"state\['f'\] is a function"):
        save_state({"f": lambda: 0}, tmp_path / "t.pt")
    assert not (tmp_path / "t.pt").exists()
