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


def test_tied_frames_are_kept_by_id_whatever_the_partition():
    """Frames of equal response (a still shot repeats its frame exactly) are ranked by id,
    smaller first, so any split of the scan keeps the same frames in the same order;
    ``torch.topk`` alone breaks ties in no set order."""
    g = torch.Generator().manual_seed(1)
    acts = torch.randint(0, 4, (60, 5), generator=g).float()  # 60 frames, many ties
    ids = torch.randperm(60, generator=g) + 1000
    key = -acts.T.double() * 1e6 + ids.double()  # value descending, then id ascending
    want = ids[torch.argsort(key, dim=1)[:, :9]]
    for cuts in ([], [7], [13, 29, 41], list(range(3, 60, 3))):
        parts, bounds = [], [0, *cuts, 60]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = RunningTopK(5, 9)
            for j in range(lo, hi, 4):
                part.update(acts[j:min(j + 4, hi)], ids[j:min(j + 4, hi)])
            parts.append(part)
        whole = parts[0]
        for part in parts[:0:-1]:  # merged in reverse order too
            whole.merge(part.values, part.ids)
        assert torch.equal(whole.ids, want), cuts
        assert torch.equal(whole.values, acts.T.gather(1, torch.argsort(key, dim=1)[:, :9]))
