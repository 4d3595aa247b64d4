"""``models.read_cache``: a stage's encoding of what it reads, kept per frame and given back bit
for bit within the cache's budget; the rows trained on, with or without the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.read_cache import ReadCache, StageInput, bytes_per_frame
from models.stack import RBMStack, StackConfig, StageConfig

PYRAMID = StackConfig(input_size=24, input_lcn_sigma=0.0, stages=(
    StageConfig(kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, pool_stride=2,
                sign_split=True, rows_per_frame=4),
    StageConfig(kind="competitive", learner="rbm", field=3, n_maps=6, dims=8, sizes=(28, 20),
                rows_per_frame=4),
))


# the same with 8 x 8 windows of larger levels (19 x 19, 17 x 17): whitened by FFT
PYRAMID_FFT = StackConfig(input_size=24, input_lcn_sigma=0.0, stages=(
    PYRAMID.stages[0],
    StageConfig(kind="competitive", learner="rbm", field=8, n_maps=6, dims=8, sizes=(40, 36),
                rows_per_frame=4),
))


def _stack_and_frames(n=10, seed=0, config=PYRAMID):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 1, 24, 24), dtype=np.uint8)
    stack = RBMStack(config, device="cpu", generator=torch.Generator().manual_seed(seed))
    stack.prepare(0, torch.from_numpy(frames), generator=torch.Generator().manual_seed(1))
    stack.prepare(1, torch.from_numpy(frames), generator=torch.Generator().manual_seed(2))
    return stack, frames


def _encoded(stack, frames, stage=1):
    """What the cache must give back: the stage's encoding of the stack's reads."""
    return stack.stages[stage].encode(stack.reads(torch.from_numpy(frames), stage))


def _equal(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("config,fft", [(PYRAMID, False), (PYRAMID_FFT, True)])
def test_cached_encodings_equal_the_stages_for_new_seen_and_mixed_batches(config, fft):
    stack, frames = _stack_and_frames(config=config)
    levels = stack.reads(torch.from_numpy(frames), 1)
    assert all(stack.stages[1].whiten_conv.uses_fft(lv) == fft for lv in levels)
    cache = ReadCache(stack, 1, 2**30)
    want = _encoded(stack, frames)
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
    # dims = 8 whitened values at each 3x3 window of levels of 13 x 13 and 9 x 9
    # (((28 or 20) - 3 + 1 - 2) // 2 + 1): 11 x 11 and 7 x 7 windows
    assert per == 4 * 8 * (11 * 11 + 7 * 7)
    cache = ReadCache(stack, 1, 3 * per + per // 2)
    want = _encoded(stack, frames)
    _equal(cache.reads(frames), want)
    _equal(cache.reads(frames), want)
    assert len(cache) == 3 and cache.hits == 3


def test_a_zero_budget_encodes_each_time_and_a_tied_stage_encodes_nothing():
    stack, frames = _stack_and_frames()
    _equal(ReadCache(stack, 1, 0).reads(frames), _encoded(stack, frames))
    empty = ReadCache(stack, 1, 2**30).reads(frames[:0])
    assert [tuple(x.shape) for x in empty] == [(0, 8, 11, 11), (0, 8, 7, 7)]
    got = ReadCache(stack, 0, 2**30).reads(frames)
    torch.testing.assert_close(got, stack.reads(torch.from_numpy(frames), 0), rtol=0, atol=0)


def test_frames_are_told_apart_by_their_bytes_not_their_place_in_a_batch():
    stack, frames = _stack_and_frames()
    cache = ReadCache(stack, 1, 2**30)
    cache.reads(frames[:4])
    changed = frames[:4].copy()
    changed[2, 0, 5, 5] ^= 1  # one pixel of one frame
    got = cache.reads(changed)
    _equal(got, _encoded(stack, changed))
    assert cache.misses == 5


def test_rows_through_the_cache_equal_the_stages_rows_from_its_reads():
    """The competitive stage's rows from cached whitened windows (one convolution a level) are
    the rows it samples and whitens one by one from what it reads: the same draws, the same
    values up to float rounding; with a budget of 0 the rows are the stage's own."""
    stack, frames = _stack_and_frames()
    want = stack.stage_input(torch.from_numpy(frames), 1, torch.Generator().manual_seed(3))
    for budget in (2**30, 0):
        reader = StageInput(stack, 1, budget)
        for _ in range(2):  # new, then seen
            got = reader.rows(frames, torch.Generator().manual_seed(3))
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(want, stack.stage_input(torch.from_numpy(frames), 1,
                                                   torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("config", [PYRAMID, PYRAMID_FFT])
@pytest.mark.parametrize("stage", [0, 1])
def test_maps_from_the_cache_are_the_stages_maps_of_its_reads(config, stage):
    """A worker scores frames from its cache (``StageInput.maps``): the competitive stage's
    maps from the cached whitened windows, a tied stage's from its cached reads, equal to the
    stage's own maps of the stack's reads up to float rounding, for new, seen and mixed
    batches; with a budget of 0 they are the stage's own."""
    stack, frames = _stack_and_frames(config=config)
    st = stack.stages[stage]
    want = st.maps(stack.reads(torch.from_numpy(frames), stage))
    for budget in (2**30, 0):
        reader = StageInput(stack, stage, budget)
        for order in ([3, 1, 4], list(range(10)), [9, 0, 3]):  # new, mixed, seen
            got = reader.maps(frames[order])
            assert set(got) == set(want)
            for layer, m in got.items():
                torch.testing.assert_close(m, want[layer][order], rtol=1e-5, atol=1e-5)
    # the units matter: other weights, other maps
    w = st.learner.params["W"]
    w.copy_(-w.roll(1, 0))
    other = StageInput(stack, stage, 2**30).maps(frames)
    assert not torch.allclose(next(iter(other.values())), next(iter(want.values())))


@pytest.mark.parametrize("config", [PYRAMID, PYRAMID_FFT])
def test_indexed_reads_are_the_store_and_give_the_rows_of_the_batch_bit_for_bit(config):
    """``indexed`` hands the whole store and the batch's rows of it when every frame is cached
    (nothing copied out), else the batch itself; either way the rows a step samples are the
    ones the stage samples from the batch's encodings, bit for bit."""
    stack, frames = _stack_and_frames(config=config)
    st, per = stack.stages[1], bytes_per_frame(stack.config, 1)
    big, small = ReadCache(stack, 1, 2**30), ReadCache(stack, 1, 4 * per)
    big.reads(frames[:6])
    order = [7, 2, 9, 0, 5, 8, 2]  # new and seen frames, one twice
    for cache in (big, big, small):  # new frames stored; then all seen; past the capacity
        levels, index = cache.indexed(frames[order])
        want = _encoded(stack, frames[order])
        _equal([x[index] for x in levels], want)
        got = st.encoded_rows(levels, torch.Generator().manual_seed(5), index)
        torch.testing.assert_close(got, st.encoded_rows(want, torch.Generator().manual_seed(5)),
                                   rtol=0, atol=0)
    assert len(levels[0]) == len(order)
    assert len(big) <= len(big.indexed(frames)[0][0]) <= big.capacity  # the store, not the batch


def test_the_store_grows_with_the_frames_cached_and_keeps_them():
    stack, frames = _stack_and_frames(n=70)
    cache = ReadCache(stack, 1, 2**30)
    cache.reads(frames[:40])
    assert len(cache.store[0]) == 64  # its first size, far below the budget's capacity
    _equal(cache.reads(frames), _encoded(stack, frames))  # grown past 64: the first 40 kept
    assert len(cache) == 70 and len(cache.store[0]) == 128 < cache.capacity
    _equal(cache.reads(frames[::-1]), [w.flip(0) for w in _encoded(stack, frames)])


def test_a_fill_sizes_the_store_for_its_frames_at_once():
    stack, frames = _stack_and_frames(n=150)
    cache = ReadCache(stack, 1, 2**30)
    assert cache.fill(frames[:10], batch=4) == 10
    assert len(cache.store[0]) == 64  # below the first size: as reads would grow it
    assert cache.fill(frames, batch=16) == 150
    assert len(cache.store[0]) == 10 + 150  # sized once for the frames given, not 128 then 256
    _equal(cache.reads(frames), _encoded(stack, frames))
    cache.reads(frames[:1])
    assert cache.expected == 0  # later reads grow the store as before
