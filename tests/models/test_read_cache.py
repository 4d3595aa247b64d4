"""``models.read_cache.ReadCache``: the reads a stack computes, kept per frame and given back
bit for bit, within its budget."""

from __future__ import annotations

import numpy as np
import torch

from models.read_cache import ReadCache, bytes_per_frame
from models.stack import RBMStack, StackConfig, StageConfig

PYRAMID = StackConfig(input_size=24, input_lcn_sigma=0.0, stages=(
    StageConfig(kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, pool_stride=2,
                sign_split=True, rows_per_frame=4),
    StageConfig(kind="competitive", learner="rbm", field=3, n_maps=6, dims=8, sizes=(28, 20),
                rows_per_frame=4),
))


def _stack_and_frames(n=10, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 1, 24, 24), dtype=np.uint8)
    stack = RBMStack(PYRAMID, device="cpu", generator=torch.Generator().manual_seed(seed))
    stack.prepare(0, torch.from_numpy(frames), generator=torch.Generator().manual_seed(1))
    return stack, frames


def _equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cached_reads_equal_the_stacks_reads_for_new_seen_and_mixed_batches():
    stack, frames = _stack_and_frames()
    cache = ReadCache(stack, 1, 2**30)
    want = stack.reads(torch.from_numpy(frames), 1)
    assert isinstance(want, list) and len(want) == 2
    _equal(cache.reads(frames[:6]), [w[:6] for w in want])  # all new
    order = [7, 2, 9, 0, 5, 8]  # seen and new, mixed
    _equal(cache.reads(frames[order]), [w[order] for w in want])
    _equal(cache.reads(frames[::-1]), [w.flip(0) for w in want])  # all seen
    assert (cache.misses, cache.hits) == (6 + 3 + 1, 3 + 9)
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in cache.reads(frames))


def test_the_cache_keeps_no_more_frames_than_its_budget_and_still_answers_past_it():
    stack, frames = _stack_and_frames()
    per = bytes_per_frame(stack.config, 1)
    assert per == 4 * 8 * (13 * 13 + 9 * 9)  # 8 maps of ((28 or 20) - 3 + 1 - 2) // 2 + 1
    cache = ReadCache(stack, 1, 3 * per + per // 2)
    want = stack.reads(torch.from_numpy(frames), 1)
    _equal(cache.reads(frames), want)
    _equal(cache.reads(frames), want)
    assert len(cache.levels) == 3 and cache.hits == 3


def test_a_zero_budget_or_a_stage_with_one_input_gives_the_stacks_reads():
    stack, frames = _stack_and_frames()
    _equal(ReadCache(stack, 1, 0).reads(frames), stack.reads(torch.from_numpy(frames), 1))
    empty = ReadCache(stack, 1, 2**30).reads(frames[:0])
    assert [tuple(x.shape) for x in empty] == [(0, 8, 13, 13), (0, 8, 9, 9)]
    got = ReadCache(stack, 0, 2**30).reads(frames)
    torch.testing.assert_close(got, stack.reads(torch.from_numpy(frames), 0), rtol=0, atol=0)


def test_frames_are_told_apart_by_their_bytes_not_their_place_in_a_batch():
    stack, frames = _stack_and_frames()
    cache = ReadCache(stack, 1, 2**30)
    cache.reads(frames[:4])
    changed = frames[:4].copy()
    changed[2, 0, 5, 5] ^= 1  # one pixel of one frame
    got = cache.reads(changed)
    _equal(got, stack.reads(torch.from_numpy(changed), 1))
    assert cache.misses == 5
