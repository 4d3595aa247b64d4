"""The held-out protocol's one-sort kernel against the torch path (gathers and sorts per split).

The brute-force definition (a loop over units, thresholds and splits with scikit-learn's AUC) is
checked against ``heldout_scores`` in ``tests/models/neurons/test_selectivity.py``; here the two
backends must give the same bits, on the inputs that make counting hard: ties (rounded values,
many exact zeros), odd sizes (fewer images than thresholds), groups kept on one side, and
halves that leave some images out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.kernels import split_scores as sk
from models.neurons import selectivity as sel

pytestmark = pytest.mark.skipif(not sk.HAVE_NUMBA, reason="numba is not installed")


def table(kind: str, n: int, units: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.int64)
    y[:4] = [0, 1, 0, 1]
    x = rng.normal(size=(n, units)) + 0.8 * y[:, None] * (np.arange(units) % 3 == 0)
    x[:, 1::3] -= 0.9 * y[:, None]  # polarity -1 units
    if kind == "rounded":
        x = x.round(1)
    elif kind == "relu":
        x = np.maximum(x, 0.0)
    return x, y


def both(monkeypatch, x, y, splits) -> tuple[dict, dict]:
    rows = torch.as_tensor(x, dtype=torch.float64).T.contiguous()
    yt = torch.as_tensor(y).bool()
    assert sk.available(rows)
    numba = sel._all_split_scores(rows, yt, splits, 20)
    with monkeypatch.context() as m:
        m.setattr(sk, "available", lambda rows: False)
        torch_path = sel._all_split_scores(rows, yt, splits, 20)
    return numba, torch_path


@pytest.mark.parametrize("kind", ["continuous", "rounded", "relu"])
@pytest.mark.parametrize("n", [12, 41, 150])
def test_kernel_equals_the_torch_path(monkeypatch, kind, n):
    x, y = table(kind, n, 37, seed=n)
    groups = np.arange(n) // 2  # pairs kept on one side, as a face and its twin
    splits = sel.stratified_halves(y, 7, seed=3, groups=groups)
    numba, torch_path = both(monkeypatch, x, y, splits)
    assert set(numba) == set(sk.FIELDS) == set(torch_path)
    for k in sk.FIELDS:
        assert torch.equal(numba[k].double(), torch_path[k].double()), k


def test_images_in_neither_half_are_not_read(monkeypatch):
    x, y = table("rounded", 60, 9, seed=1)
    for c, t in sel.stratified_halves(y, 3, seed=2):
        split = [(c[: len(c) - 3], t[2:])]
        numba, torch_path = both(monkeypatch, x, y, split)
        x_moved = x.copy()  # what neither half holds may be anything
        x_moved[np.setdiff1d(np.arange(60), np.r_[split[0][0].numpy(), split[0][1].numpy()])] = 1e9
        moved, _ = both(monkeypatch, x_moved, y, split)
        for k in sk.FIELDS:
            assert torch.equal(numba[k].double(), torch_path[k].double()), k
            assert torch.equal(numba[k], moved[k]), k


def test_heldout_scores_are_the_same_on_either_backend(monkeypatch):
    x, y = table("relu", 90, 50, seed=5)
    fast = sel.heldout_scores(x, y, n_splits=9, seed=1, groups=np.arange(90) // 3)
    monkeypatch.setattr(sk, "available", lambda rows: False)
    slow = sel.heldout_scores(x, y, n_splits=9, seed=1, groups=np.arange(90) // 3)
    for field in ("unit_accuracy", "unit_balanced_accuracy", "unit_balanced_accuracy_std",
                  "unit_auc", "chosen", "best_polarity", "best_threshold",
                  "best_split_balanced_accuracy"):
        assert torch.equal(getattr(fast, field), getattr(slow, field)), field
    assert fast.best_balanced_accuracy == slow.best_balanced_accuracy
