"""``models.stages.windows``: windows read by index equal ``F.unfold``'s columns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.stages.windows import random_windows, windows_at, windows_hwc


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_random_windows_are_the_unfold_columns_the_same_draw_picks(stride):
    g = torch.Generator().manual_seed(stride)
    x = torch.randn(5, 3, 17, 14, generator=g)
    got = random_windows(x, 4, stride, 6, torch.Generator().manual_seed(7))
    cols = F.unfold(x, 4, stride=stride)  # (N, C r r, L)
    pick = torch.randint(cols.shape[2], (5, 6), generator=torch.Generator().manual_seed(7))
    want = cols.gather(2, pick[:, None, :].expand(-1, cols.shape[1], -1)).transpose(1, 2)
    assert got.shape == (30, 3 * 16)
    torch.testing.assert_close(got, want.reshape(30, -1), rtol=0, atol=0)


def test_windows_at_reads_each_window_where_it_is_asked():
    x = torch.arange(2 * 2 * 6 * 5, dtype=torch.float32).reshape(2, 2, 6, 5)
    got = windows_at(x, torch.tensor([1, 0]), torch.tensor([3, 0]), torch.tensor([2, 1]), 3)
    torch.testing.assert_close(got[0], x[1, :, 3:6, 2:5].reshape(-1), rtol=0, atol=0)
    torch.testing.assert_close(got[1], x[0, :, 0:3, 1:4].reshape(-1), rtol=0, atol=0)


def test_windows_hwc_are_the_same_windows_position_major_in_any_memory_format():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 9, 8, generator=g)
    i, y, z = torch.tensor([2, 0, 1]), torch.tensor([0, 6, 3]), torch.tensor([5, 1, 0])
    want = windows_at(x, i, y, z, 3).view(3, 5, 3, 3).permute(0, 2, 3, 1).reshape(3, -1)
    for v in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(windows_hwc(v, i, y, z, 3), want, rtol=0, atol=0)
