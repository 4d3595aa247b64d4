"""The parameter updater: momentum schedule, weight decay, slices, state."""

from __future__ import annotations

import pytest
import torch

from models import (
    ParameterUpdater,
    UpdateConfig,
)
from tests.models.helpers import DT, gen


# --------------------------------------------------------------------------- optimiser
def test_updater_momentum_schedule_and_weight_decay():
    cfg = UpdateConfig(
        learning_rate=0.1,
        initial_momentum=0.5,
        momentum=0.9,
        momentum_switch_step=2,
        weight_decay=0.01,
    )
    up = ParameterUpdater(cfg, decay_names=("W",))
    params = {"W": torch.ones(2, dtype=DT), "b": torch.ones(2, dtype=DT)}
    g = {"W": torch.full((2,), 2.0, dtype=DT), "b": torch.full((2,), 2.0, dtype=DT)}
    vel_w = vel_b = 0.0
    w = b = 1.0
    for step in range(4):
        m = 0.5 if step < 2 else 0.9
        vel_w = m * vel_w + 0.1 * (2.0 - 0.01 * w)
        vel_b = m * vel_b + 0.1 * 2.0
        w, b = w + vel_w, b + vel_b
        up.step(params, g)
    torch.testing.assert_close(params["W"], torch.full((2,), w, dtype=DT))
    torch.testing.assert_close(params["b"], torch.full((2,), b, dtype=DT))


@pytest.mark.parametrize("method", ["sgd", "adagrad"])
def test_updater_on_slices_equals_updater_on_whole(method):
    cfg = UpdateConfig(learning_rate=0.05, method=method, momentum_switch_step=1)
    whole = {"W": torch.randn(6, 3, generator=gen(1))}
    parts = [whole["W"][:2].clone(), whole["W"][2:].clone()]
    up_whole = ParameterUpdater(cfg)
    up_parts = [ParameterUpdater(cfg), ParameterUpdater(cfg)]
    for i in range(5):
        g = torch.randn(6, 3, generator=gen(10 + i))
        up_whole.step(whole, {"W": g})
        up_parts[0].step({"W": parts[0]}, {"W": g[:2]})
        up_parts[1].step({"W": parts[1]}, {"W": g[2:]})
    torch.testing.assert_close(torch.cat(parts), whole["W"])
    assert up_parts[0].state_dict()["step_count"] == 5


def test_updater_state_dict_round_trip_and_errors():
    cfg = UpdateConfig(learning_rate=0.1)
    a, b = ParameterUpdater(cfg), ParameterUpdater(cfg)
    pa = {"W": torch.zeros(3)}
    a.step(pa, {"W": torch.ones(3)})
    b.load_state_dict(a.state_dict())
    pb = {"W": pa["W"].clone()}
    a.step(pa, {"W": torch.ones(3)})
    b.step(pb, {"W": torch.ones(3)})
    torch.testing.assert_close(pa["W"], pb["W"])
    with pytest.raises(KeyError):
        a.step(pa, {"Q": torch.ones(3)})
    with pytest.raises(ValueError, match="shape"):
        a.step(pa, {"W": torch.ones(4)})
    with pytest.raises(ValueError, match="learning_rate"):
        UpdateConfig(learning_rate=-1)


@pytest.mark.parametrize("method", ["sgd", "adagrad"])
def test_updater_anneals_the_learning_rate_linearly(method):
    """anneal_steps = 4, anneal_to = 0.25: rates 1, 0.8125, 0.625, 0.4375, then 0.25 for
    good; with momentum 0 each SGD step moves by exactly its rate times the update."""
    cfg = UpdateConfig(learning_rate=1.0, momentum=0.0, initial_momentum=0.0, weight_decay=0.0,
                       anneal_steps=4, anneal_to=0.25, method=method)
    up = ParameterUpdater(cfg)
    rates = []
    for _ in range(6):
        rates.append(up.current_learning_rate())
        up.step({"W": torch.zeros(2, dtype=DT)}, {"W": torch.ones(2, dtype=DT)})
    assert rates == pytest.approx([1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25])
    sgd = ParameterUpdater(cfg)
    w = {"W": torch.zeros(2, dtype=DT)}
    for _ in range(6):
        sgd.step(w, {"W": torch.ones(2, dtype=DT)})
    if method == "sgd":
        torch.testing.assert_close(w["W"], torch.full((2,), sum(rates), dtype=DT))
    restored = ParameterUpdater(cfg)
    restored.load_state_dict(sgd.state_dict())
    assert restored.current_learning_rate() == pytest.approx(0.25)


def test_anneal_settings_are_checked():
    with pytest.raises(ValueError, match="anneal_steps"):
        UpdateConfig(anneal_steps=-1)
    with pytest.raises(ValueError, match="anneal_to"):
        UpdateConfig(anneal_to=0.0)
    assert ParameterUpdater(UpdateConfig(learning_rate=0.3)).current_learning_rate() == 0.3
