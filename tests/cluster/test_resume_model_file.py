"""A resumed run's ``model.pt`` is read from a file: anything but the run's own stages is one
line (``CheckpointError`` or ``DamagedStateFile``), before anything is trained."""

from __future__ import annotations

import pytest
import torch

from cluster.checkpoint import CheckpointError
from cluster.state_io import write_state
from cluster.trainer import resumed_stages
from jobs.config import load
from models.stack import RBMStack
from models.state_file import DamagedStateFile
from tests.cluster.test_plan import ROOT


def _stack(seed: int = 0) -> RBMStack:
    cfg = load(ROOT / "configs/demo.toml")
    return RBMStack(cfg.model, generator=torch.Generator().manual_seed(seed), device="cpu")


def test_a_whole_model_file_resumes_its_trained_stages(tmp_path):
    saved, into = _stack(0), _stack(1)
    write_state(tmp_path / "model.pt", {"state": saved.state_dict(), "stages_trained": 1})
    assert resumed_stages(str(tmp_path / "model.pt"), into) == 1
    assert _tensors(into.state_dict()) and all(
        torch.equal(a, b) for a, b in zip(_tensors(into.state_dict()),
                                          _tensors(saved.state_dict()), strict=True))


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor of a nested state, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj) for t in _tensors(obj[k])]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _tensors(v)]
    return []


@pytest.mark.parametrize("blob", [
    {"stages_trained": "two"}, {"stages_trained": -5}, {"stages_trained": 3},
    {"stages_trained": None}, {"state": {"x": 1}}, {"state": {"rbms": "no"}},
    {"state": {"rbms": []}}, ["a", "list"]], ids=str)
def test_a_model_file_with_wrong_fields_is_one_line(tmp_path, blob):
    saved = _stack(0)
    if isinstance(blob, dict):
        blob = {"state": saved.state_dict(), "stages_trained": 1, **blob}
        blob = {k: v for k, v in blob.items() if v is not None}
    write_state(tmp_path / "model.pt", blob)
    with pytest.raises((CheckpointError, DamagedStateFile), match="model.pt|saved state"):
        resumed_stages(str(tmp_path / "model.pt"), _stack(1))


@pytest.mark.parametrize("blob", [["a", "list"], {"config": {}}, {"state": {}}], ids=str)
def test_a_saved_model_without_its_fields_is_damaged(blob):
    with pytest.raises(DamagedStateFile, match="saved model"):
        RBMStack.from_saved(blob)
