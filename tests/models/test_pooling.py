"""Pooling over position and size against explicit loops."""

from __future__ import annotations

import pytest
import torch

from models.layers import l2_pool
from models.pooling import pool, pool_over_sizes, pyramid, respond_over_sizes
from tests.models.helpers import DT, gen


def brute_pool(x, size, stride, kind):
    N, C, H, W = x.shape
    kh, kw = (H, W) if size is None else (size, size)
    sh, sw = (kh, kw) if stride is None else (stride, stride)
    rows = []
    for y in range(0, H - kh + 1, sh):
        cols = []
        for xx in range(0, W - kw + 1, sw):
            win = x[:, :, y : y + kh, xx : xx + kw].reshape(N, C, -1)
            if kind == "max":
                cols.append(win.max(-1).values)
            elif kind == "l2":
                cols.append(win.square().sum(-1).sqrt())
            else:
                cols.append(win.square().mean(-1).sqrt())
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize("kind", ["rms", "l2", "max"])
@pytest.mark.parametrize("size,stride", [(3, 2), (2, None), (4, 1), (None, None), (7, 3)])
def test_pool_equals_loops(kind, size, stride):
    x = torch.randn(2, 3, 7, 9, generator=gen(1), dtype=DT)
    if size == 7:
        x = x[:, :, :, :7]
    torch.testing.assert_close(pool(x, size, stride, kind), brute_pool(x, size, stride, kind))


def test_l2_kind_is_layers_l2_pool():
    x = torch.randn(2, 3, 8, 8, generator=gen(2), dtype=DT)
    torch.testing.assert_close(pool(x, 3, 1, "l2"), l2_pool(x, 3, 1))


def test_pool_rejects_a_window_larger_than_the_map():
    with pytest.raises(ValueError, match="size <= map side"):
        pool(torch.zeros(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match="kind"):
        pool(torch.zeros(1, 1, 4, 4), 2, kind="mean")


@pytest.mark.parametrize("kind", ["rms", "l2", "max"])
def test_pool_over_sizes_pools_the_union_of_positions(kind):
    maps = [torch.randn(2, 4, s, s, generator=gen(s), dtype=DT) for s in (5, 3, 2)]
    flat = torch.cat([m.flatten(2) for m in maps], 2)  # (N, K, all positions)
    expect = {
        "max": flat.max(-1).values,
        "l2": flat.square().sum(-1).sqrt(),
        "rms": flat.square().mean(-1).sqrt(),
    }[kind]
    torch.testing.assert_close(pool_over_sizes(maps, kind), expect)


def test_respond_over_sizes_finds_a_pattern_at_any_size():
    """A blob detector (one fixed filter) pooled over position and a pyramid responds the same to
    a blob that is small in one image and large in another, where a single size does not."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def blob(cx, cy, r):
        return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))

    images = torch.stack([blob(8, 20, 2.0), blob(18, 14, 4.0)]).unsqueeze(1)  # (2, 1, 32, 32)
    filt = blob(4, 4, 2.0)[:9, :9].view(1, 1, 9, 9)
    filt = filt / filt.norm()

    def respond(level):  # cosine similarity of the filter with each 9x9 window
        norms = torch.nn.functional.avg_pool2d(level.square(), 9, 1).mul(81).sqrt()
        return torch.nn.functional.conv2d(level, filt) / norms.clamp(min=1e-6)

    one_size = respond_over_sizes(images, [32], respond)[:, 0]
    pooled = respond_over_sizes(images, [32, 16], respond)[:, 0]
    assert abs(pooled[0] - pooled[1]) < 0.5 * abs(one_size[0] - one_size[1])
    assert [lvl.shape[-1] for lvl in pyramid(images, [32, 16])] == [32, 16]
