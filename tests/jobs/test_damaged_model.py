"""A ``model.pt`` cut short (a full disk, an interrupted copy): ``evaluate`` and ``visualize``
refuse it in one line naming the file, exit status 2, instead of torch's zip-reader traceback."""

from __future__ import annotations

import pytest
import torch

from cluster.state_io import write_state
from jobs.config import dumps, load
from models.stack import RBMStack
from tests.cluster.data import make_dataset

SMALL = ["--model.input_size=16", "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]",
         "--train.stages=1"]


@pytest.fixture
def run(tmp_path):
    """A run folder: config.toml, its dataset, and a whole model.pt."""
    data = make_dataset(tmp_path / "data", n_videos=1, frames_per_video=8, size=16,
                        shard_rows=8)
    run = tmp_path / "run"
    run.mkdir()
    config = load(None, [f'--data.path="{data}"', *SMALL, f'--train.run_dir="{run}"'])
    (run / "config.toml").write_text(dumps(config))
    stack = RBMStack(config.model, generator=torch.Generator().manual_seed(0), device="cpu")
    write_state(run / "model.pt", {"config": stack.config.to_dict(), "state": stack.state_dict(),
                                   "stages_trained": 1})
    return run


@pytest.mark.parametrize("job", ["evaluate", "visualize"])
@pytest.mark.parametrize("keep", [0.04, 0.5])  # torch fails differently at each length
def test_a_truncated_model_is_one_line_naming_the_file(run, capsys, job, keep):
    from importlib import import_module

    whole = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(whole[: int(len(whole) * keep)])
    assert import_module(f"jobs.{job}").main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.pt'} is not a whole state file" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("job", ["evaluate", "visualize"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_with_non_finite_weights_is_one_line_and_writes_nothing(run, capsys, job,
                                                                        value):
    """NaN weights went through: visualize wrote NaN into stage0.json (not JSON) and drew
    blank pictures; evaluate printed scikit-learn's page-long refusal of NaN features."""
    from importlib import import_module

    from cluster.state_io import read_state

    blob = read_state(run / "model.pt")
    blob["state"]["rbms"][0]["params"]["W"][0, 0] = value
    write_state(run / "model.pt", blob)
    assert import_module(f"jobs.{job}").main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.pt'}: stage 0's params.W holds NaN or infinite" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["config.toml", "model.pt"]


@pytest.mark.parametrize("job", ["evaluate", "visualize"])
@pytest.mark.parametrize("count", [None, "x", -1, 7])
def test_a_model_whose_stage_count_is_not_one_is_one_line(run, capsys, job, count):
    """``stages_trained`` must be a count of the stack's stages: None was a TypeError
    traceback, "x" a bare "invalid literal for int()" naming no file, 7 (more than the stack
    has) a torch.cat traceback in visualize."""
    from importlib import import_module

    from cluster.state_io import read_state

    blob = read_state(run / "model.pt")
    blob["stages_trained"] = count
    write_state(run / "model.pt", blob)
    assert import_module(f"jobs.{job}").main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.pt'}: stages_trained is {count!r}" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def _set(path: tuple, value):
    """A change to ``blob["state"]["rbms"][0]``: the field at ``path`` set to ``value``."""
    def change(stage: dict) -> None:
        for key in path[:-1]:
            stage = stage[key]
        stage[path[-1]] = value
    return change


@pytest.mark.parametrize("job", ["evaluate", "visualize"])
@pytest.mark.parametrize("change", [_set(("params", "W"), "abc"), _set(("params",), [1]),
                                    _set(("params",), None)],
                         ids=["weight a string", "params a list", "params None"])
def test_a_model_with_a_field_of_the_wrong_kind_is_one_line(run, capsys, job, change):
    """A string where a weight belongs was an AttributeError traceback ('str' object has no
    attribute 'shape'); a list or None where the parameters belong, a TypeError one."""
    from importlib import import_module

    from cluster.state_io import read_state

    blob = read_state(run / "model.pt")
    change(blob["state"]["rbms"][0])
    write_state(run / "model.pt", blob)
    assert import_module(f"jobs.{job}").main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.pt'}: the saved state's stage 0 is not what catneuron writes" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
