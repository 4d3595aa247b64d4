"""Decoding against direct cv2.VideoCapture on generated videos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.decode import DecodeConfig, DecodeError, convert_frame, decode_video, select_indices
from tests.pipeline.conftest import cv2_frames, make_video


@pytest.mark.parametrize("fourcc,ext", [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_every_frame_native_grey_equals_cv2_byte_for_byte(tmp_path, fourcc, ext):
    path = make_video(tmp_path / f"v{ext}", n_frames=47, w=80, h=60, fourcc=fourcc)
    ref = cv2_frames(path)
    config = DecodeConfig(every=1, input_size=0, channels=1, batch_frames=10)
    batch, info = decode_video(path, config)
    assert len(batch.pixels) == len(ref) == info.frames_read == 47
    assert batch.pixels.shape == (47, 60, 80, 1)
    for got, frame in zip(batch.pixels, ref, strict=True):
        want = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        assert got[:, :, 0].tobytes() == want.tobytes()
    np.testing.assert_array_equal(batch.frame_index, np.arange(47))
    np.testing.assert_allclose(batch.timestamp_ms, np.arange(47) * 40.0)


def test_colour_is_rgb_and_every_k(video):
    ref = cv2_frames(video)
    batch, _ = decode_video(video, DecodeConfig(every=7, input_size=0, channels=3))
    np.testing.assert_array_equal(batch.frame_index, np.arange(0, 60, 7))
    for got, i in zip(batch.pixels, batch.frame_index, strict=True):
        assert got.tobytes() == cv2.cvtColor(ref[i], cv2.COLOR_BGR2RGB).tobytes()


def test_max_frames_spread_over_the_whole_video(video):
    batch, _ = decode_video(video, DecodeConfig(every=2, max_frames=5, input_size=0))
    idx = batch.frame_index
    assert len(idx) == 5 and idx[0] == 0 and idx[-1] == 58  # last kept candidate of 0,2,..,58
    assert np.all(idx % 2 == 0) and np.all(np.diff(idx) > 0)
    ref = cv2_frames(video)
    for got, i in zip(batch.pixels, idx, strict=True):  # sequential decode: the right frames
        assert got[:, :, 0].tobytes() == cv2.cvtColor(ref[i], cv2.COLOR_BGR2GRAY).tobytes()


def test_select_indices():
    assert select_indices(100, 1, None) is None
    assert select_indices(10, 1, 20) is None
    np.testing.assert_array_equal(select_indices(9, 1, 3), [0, 4, 8])
    np.testing.assert_array_equal(select_indices(100, 10, 4), [0, 30, 60, 90])


def test_resize_is_centre_crop_then_area(video):
    ref = cv2_frames(video)[0]
    got = convert_frame(ref, DecodeConfig(input_size=32, channels=1, interpolation="area"))
    grey = cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY)[:, 12:84]  # 96x72 -> central 72x72
    want = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    assert got.shape == (32, 32, 1)
    np.testing.assert_array_equal(got[:, :, 0], want)
    rgb = convert_frame(ref, DecodeConfig(input_size=16, channels=3, interpolation="linear"))
    assert rgb.shape == (16, 16, 3)
    # box_linear: 72 -> 16 is a 4x box mean (72 -> 18) then bilinear 18 -> 16
    fast = convert_frame(ref, DecodeConfig(input_size=16, channels=1))
    box = cv2.resize(grey, (18, 18), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(
        fast[:, :, 0], cv2.resize(box, (16, 16), interpolation=cv2.INTER_LINEAR)
    )
    exact = cv2.resize(grey.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA)
    assert np.abs(fast[:, :, 0] - exact).mean() < 3.0  # close to exact area averaging


@pytest.mark.parametrize(
    "content,reason",
    [(b"", "empty file"), (b"hello, not a video\n" * 10, "cannot open this file as a video")],
)
def test_bad_files_raise_clear_errors(tmp_path, content, reason):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(DecodeError, match=reason):
        decode_video(p, DecodeConfig())


def test_stream_breaking_midway_keeps_frames_and_says_so(tmp_path):
    good = make_video(tmp_path / "good.avi", n_frames=80, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    batch, info = decode_video(cut, DecodeConfig(input_size=0))
    assert 10 < len(batch.pixels) < 80
    assert any("stream ended" in w for w in info.warnings)


def test_config_validation():
    with pytest.raises(ValueError, match="every=0"):
        DecodeConfig(every=0)
    with pytest.raises(ValueError, match="interpolation"):
        DecodeConfig(interpolation="cubic")  # type: ignore[arg-type]


def test_a_frame_side_past_the_limit_is_refused_at_once():
    """``--input-size 100000`` was accepted and each video failed about 28 s later, after
    asking for about 10 GB for a frame."""
    from pipeline.decode import MAX_INPUT_SIZE

    assert DecodeConfig(input_size=MAX_INPUT_SIZE).input_size == MAX_INPUT_SIZE
    for bad in (-1, MAX_INPUT_SIZE + 1, 100_000):
        with pytest.raises(ValueError, match=f"input_size={bad}: must be 0..{MAX_INPUT_SIZE}"):
            DecodeConfig(input_size=bad)


def test_a_batch_of_large_native_frames_is_bounded_in_bytes(tmp_path):
    """``batch_frames`` frames of a native 1080p colour video are 1.6 GB: a decode actor would
    hold that (and copies) before writing anything; a batch is also cut at ``BATCH_BYTES``."""
    from pipeline.decode import BATCH_BYTES, iter_frames

    path = make_video(tmp_path / "hd.mp4", n_frames=14, w=1920, h=1080)
    config = DecodeConfig(input_size=0, channels=3)  # 6.2 MB a frame, 256 frames a batch
    frame_bytes = 1920 * 1080 * 3
    batches = list(iter_frames(path, config))
    assert sum(len(b.pixels) for b in batches) == 14 and len(batches) > 1
    assert all(b.pixels.nbytes <= max(BATCH_BYTES, frame_bytes) for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.frame_index for b in batches]), np.arange(14))
