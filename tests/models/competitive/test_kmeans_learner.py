"""Mini-batch spherical k-means with the RBM training interface, against direct computation."""

from __future__ import annotations

import torch

from models.competitive.kmeans_learner import KMeansLearner
from models.competitive.spherical_kmeans import normalise_rows
from models.rbm.optim import UpdateConfig


def _learner(d=5, k=3, lr=0.5, seed=0):
    return KMeansLearner(d, k, update=UpdateConfig(learning_rate=lr, momentum=0.0,
                                                   initial_momentum=0.0, weight_decay=0.0),
                         generator=torch.Generator().manual_seed(seed), device="cpu",
                         dtype=torch.float64)


def test_update_is_the_mean_of_the_rows_each_unit_wins_minus_the_unit():
    km = _learner()
    g = torch.Generator().manual_seed(1)
    km.params["W"].copy_(torch.randn(3, 5, generator=g, dtype=torch.float64) * 2)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    upd = km.compute_update(x)["W"]
    xn, u = normalise_rows(x), normalise_rows(km.params["W"])
    for k in range(3):  # a loop over rows: the definition, not the vectorised code
        won = [xn[n] for n in range(40) if int(torch.argmax(u @ xn[n])) == k]
        want = (torch.stack(won).mean(0) - km.params["W"][k]) if won else torch.zeros(5)
        torch.testing.assert_close(upd[k], want.to(upd))


def test_training_finds_three_separated_directions():
    g = torch.Generator().manual_seed(2)
    centres = torch.eye(6, dtype=torch.float64)[:3] * 3
    x = torch.cat([c + 0.1 * torch.randn(200, 6, generator=g, dtype=torch.float64)
                   for c in centres])
    km = _learner(d=6, k=3, lr=0.3)
    km.init_from_data(x)
    for _ in range(60):
        idx = torch.randint(len(x), (64,), generator=g)
        km.apply_update(km.compute_update(x[idx]))
    cos = km.unit_weights() @ normalise_rows(centres).T
    assert sorted(cos.amax(0).tolist())[0] > 0.99  # every centre has a unit on it
    assert float(km.reconstruction_error(x)) < 0.02
    torch.testing.assert_close(km.free_energy(x), 1 - km.mean_hiddens(x).amax(1))


def test_state_round_trip_and_no_decay():
    km = _learner()
    assert km.decay_names == ()
    other = _learner(seed=5)
    other.load_state_dict(km.state_dict())
    torch.testing.assert_close(other.params["W"], km.params["W"])


def test_a_unit_that_wins_no_rows_is_left_where_it_is():
    """Rows all near +e0 and a unit at -e0: that unit wins none of them, so its update is
    exactly zero and a step leaves it in place (Sculley's rule moves only the winners). The
    test above draws its rows so that every unit wins some, so an update of ``mean - W`` for
    every unit (a losing unit pulled to zero, its direction lost) passed it."""
    km = _learner(lr=1.0)
    e = torch.eye(5, dtype=torch.float64)
    km.params["W"].copy_(torch.stack([e[0] + e[1], e[0] - e[1], -2 * e[0]]))
    g = torch.Generator().manual_seed(3)
    x = e[0] + 0.2 * torch.randn(30, 5, generator=g, dtype=torch.float64)
    counts = km.statistics(x)["counts"]
    assert counts[2] == 0 and counts[0] > 0 and counts[1] > 0
    before = km.params["W"].clone()
    upd = km.compute_update(x)["W"]
    assert torch.equal(upd[2], torch.zeros(5, dtype=torch.float64))
    km.apply_update(km.compute_update(x))
    assert torch.equal(km.params["W"][2], before[2])
    assert not torch.equal(km.params["W"][0], before[0])  # the winners did move
