"""Running top-k over batches equals a brute-force top-k; merged states equal the union's."""

from __future__ import annotations

import torch

from models.neurons.topk import RunningTopK


def test_running_topk_equals_brute_force_and_merge():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(50, 7, generator=g)  # 50 frames, 7 units
    ids = torch.arange(100, 150)
    a, b, whole = RunningTopK(7, 4), RunningTopK(7, 4), RunningTopK(7, 4)
    for lo in range(0, 50, 8):
        part = a if lo < 24 else b
        part.update(acts[lo : lo + 8], ids[lo : lo + 8])
        whole.update(acts[lo : lo + 8], ids[lo : lo + 8])
    top, where = torch.topk(acts.T, 4, dim=1)
    assert torch.equal(whole.values, top) and torch.equal(whole.ids, ids[where])
    a.merge(b.values, b.ids)
    assert torch.equal(a.values, top) and torch.equal(a.ids, ids[where])


def test_fewer_frames_than_k():
    t = RunningTopK(2, 5)
    t.update(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([7, 9]))
    assert t.values.tolist() == [[3.0, 1.0], [2.0, 0.0]] and t.ids.tolist() == [[9, 7], [7, 9]]
