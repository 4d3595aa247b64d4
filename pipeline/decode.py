"""Decode one video file into frames with OpenCV: sampling, square crop, resize, grey or RGB.

Plain functions, no Ray: the decode actors in :mod:`pipeline.pool` are thin shells around
:func:`iter_frames`. Frames are decoded *sequentially* (``grab`` every frame, ``retrieve`` only the
kept ones) because OpenCV's seeks (``CAP_PROP_POS_FRAMES``) are not frame-exact for most codecs.

Le et al. (ICML 2012, section 4) trained on 200x200 frames sampled from YouTube videos; the demo
uses 64x64 grey frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Interpolation = Literal["box_linear", "area", "linear", "nearest"]
_INTERP = {
    "box_linear": cv2.INTER_LINEAR,  # after the integer box reduction, see resize
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}
# a decoded batch is also cut at this many pixel bytes: 256 native 1080p colour frames are
# 1.6 GB, held (with copies) by each decode actor before any of it is written
BATCH_BYTES = 64 << 20
MAX_INPUT_SIZE = 4096  # frame side; a larger one would ask for gigabytes a frame


@dataclass(frozen=True)
class DecodeConfig:
    """How frames are sampled and converted.

    Attributes
    ----------
    every:
        Keep every ``every``-th frame (frame indices 0, k, 2k, ...).
    max_frames:
        At most this many frames per video, spread evenly over the video (``None``: no limit).
    input_size:
        Output side in pixels, the model's ``input_size``: the frame is centre-cropped to a
        square and resized to ``input_size x input_size``. ``0`` keeps the native frame (no
        crop, no resize).
    channels:
        1 stores one grey channel (``cv2.COLOR_BGR2GRAY``), 3 the RGB channels; the model's
        ``channels``.
    interpolation:
        Resize filter. ``"area"`` is ``cv2.INTER_AREA`` (the mean of the source pixels under
        each output pixel: no aliasing, but its general path for non-integer ratios can cost
        more than decoding). ``"box_linear"`` (default) first shrinks by the integer factor
        ``floor(src / dst)`` with ``INTER_AREA`` (its cheap exact box path), then bilinear for
        the remaining < 2x: about the cost of ``"linear"``, with less of its aliasing.
        Figures: README / ``benchmarks/ingest.py``.
    batch_frames:
        Frames per yielded batch (bounds the memory of one decode call); a batch of large
        frames is cut sooner, at ``BATCH_BYTES`` of pixels.
    decode_threads:
        FFmpeg decoder threads per video (``CAP_PROP_N_THREADS``); 1 so that ``n`` decode
        actors use ``n`` cores. 0 keeps OpenCV's default (all cores).
    """

    every: int = 1
    max_frames: int | None = None
    input_size: int = 64
    channels: int = 1
    interpolation: Interpolation = "box_linear"
    batch_frames: int = 256
    decode_threads: int = 1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every={self.every}: must be >= 1 (1 keeps every frame)")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames={self.max_frames}: must be >= 1 or None (no limit)")
        if not 0 <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"input_size={self.input_size}: must be 0..{MAX_INPUT_SIZE} (0 "
                             "keeps the native frame)")
        if self.channels not in (1, 3):
            raise ValueError(f"channels={self.channels}: must be 1 (grey) or 3 (RGB)")
        if self.interpolation not in _INTERP:
            raise ValueError(
                f"interpolation={self.interpolation!r}: choose one of {sorted(_INTERP)}"
            )
        if self.decode_threads < 0:
            raise ValueError(f"decode_threads={self.decode_threads}: must be >= 0")
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames={self.batch_frames}: must be >= 1")


def renamed_options(options: dict) -> dict:
    """Decode options from before they took the model's names, under today's: ``size`` ->
    ``input_size``, ``grey: bool`` -> ``channels: 1 | 3`` (older manifests and saved configs);
    other keys unchanged."""
    out = dict(options)
    if "size" in out and "input_size" not in out:
        out["input_size"] = out.pop("size")
    if isinstance(out.get("grey"), bool) and "channels" not in out:
        out["channels"] = 1 if out.pop("grey") else 3
    return out


@dataclass
class FrameBatch:
    """Decoded frames of one video: ``pixels`` uint8 (N, H, W, C) in OpenCV's HWC order."""

    pixels: np.ndarray
    frame_index: np.ndarray  # int64 (N,)
    timestamp_ms: np.ndarray  # float64 (N,)


@dataclass
class VideoInfo:
    """What the container says about a video, and what decoding found (filled while iterating)."""

    frame_count: int  # cv2.CAP_PROP_FRAME_COUNT (may be an estimate, or 0 if unknown)
    fps: float
    width: int
    height: int
    frames_read: int = 0  # frames that cv2 actually returned
    warnings: list[str] = field(default_factory=list)


class DecodeError(RuntimeError):
    """A video that cannot be decoded at all; the message says why and what to do."""


def select_indices(frame_count: int, every: int, max_frames: int | None) -> np.ndarray | None:
    """Frame indices to keep: every ``every``-th, thinned evenly to ``max_frames``.

    Returns ``None`` when no thinning is needed (keep every ``every``-th frame as it comes).
    """
    if max_frames is None or frame_count <= 0:
        return None
    candidates = np.arange(0, frame_count, every, dtype=np.int64)
    if len(candidates) <= max_frames:
        return None
    picks = np.linspace(0, len(candidates) - 1, max_frames).round().astype(np.int64)
    return candidates[np.unique(picks)]


def convert_frame(bgr: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """BGR frame from cv2 -> (H, W, C) uint8: centre-cropped square, grey or RGB, resized."""
    if config.input_size:  # crop first: the colour conversion then touches only the kept pixels
        h, w = bgr.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        bgr = bgr[top : top + side, left : left + side]
    out = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if config.channels == 1 else cv2.COLOR_BGR2RGB)
    if config.input_size and out.shape[0] != config.input_size:
        out = resize(out, config.input_size, config.interpolation)
    if out.ndim == 2:
        out = out[:, :, None]  # (H, W) -> (H, W, 1)
    return out


def resize(square: np.ndarray, size: int, interpolation: Interpolation) -> np.ndarray:
    """Resize a square image to ``size x size`` (box_linear: integer box mean, then bilinear)."""
    if interpolation == "box_linear":
        factor = square.shape[0] // size
        if factor >= 2:
            side = square.shape[0] // factor
            square = cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)
        if square.shape[0] == size:
            return square
    return cv2.resize(square, (size, size), interpolation=_INTERP[interpolation])


def open_video(path: str | Path, threads: int = 0) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open ``path`` with ``cv2.VideoCapture`` or raise :class:`DecodeError` with a clear reason."""
    p = Path(path)
    if not p.exists():
        raise DecodeError(f"file not found: {p}")
    if p.is_dir():
        raise DecodeError(f"{p} is a folder, not a video file")
    if p.stat().st_size == 0:
        raise DecodeError(
            "empty file (0 bytes): the download or copy did not finish; fetch it again"
        )
    if threads:
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    else:
        cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise DecodeError(
            "OpenCV cannot open this file as a video: it is not a video, or it is damaged or "
            "truncated (an MP4 cut before its index cannot be read); re-download or re-encode it"
        )
    info = VideoInfo(
        frame_count=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    return cap, info


def iter_frames(
    path: str | Path, config: DecodeConfig, info_out: list[VideoInfo] | None = None
) -> Iterator[FrameBatch]:
    """Decode ``path`` sequentially and yield batches of the kept frames.

    Parameters
    ----------
    path:
        A video file OpenCV (FFmpeg backend) can read.
    config:
        Sampling and conversion options.
    info_out:
        If given, the :class:`VideoInfo` is appended to it before the first batch; its
        ``frames_read`` and ``warnings`` are final once the iterator is exhausted.

    Raises
    ------
    DecodeError
        If the file cannot be opened, or opens but yields no frame.
    """
    cap, info = open_video(path, config.decode_threads)
    if info_out is not None:
        info_out.append(info)
    keep = select_indices(info.frame_count, config.every, config.max_frames)
    keep_set = None if keep is None else set(keep.tolist())
    limit = config.max_frames if keep is None else None  # unknown frame count: first N kept
    fps = info.fps if info.fps > 0 else 0.0
    pixels: list[np.ndarray] = []
    indices: list[int] = []
    times: list[float] = []
    n_kept = 0
    index = 0
    try:
        while True:
            if not cap.grab():
                break
            info.frames_read += 1
            wanted = (index in keep_set) if keep_set is not None else (index % config.every == 0)
            if wanted and (limit is None or n_kept < limit):
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    info.warnings.append(f"frame {index}: decoder returned no image; skipped")
                else:
                    pixels.append(convert_frame(bgr, config))
                    indices.append(index)
                    ms = index * 1000.0 / fps if fps else float(cap.get(cv2.CAP_PROP_POS_MSEC))
                    times.append(ms)
                    n_kept += 1
                    if (len(pixels) >= config.batch_frames
                            or (len(pixels) + 1) * pixels[0].nbytes > BATCH_BYTES):
                        yield _batch(pixels, indices, times)
                        pixels, indices, times = [], [], []
            index += 1
        if pixels:
            yield _batch(pixels, indices, times)
    finally:
        cap.release()
    if info.frames_read == 0:
        raise DecodeError(
            "the file opens as a video but no frame could be decoded (damaged stream or "
            "unsupported codec); re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    # A container frame count is an estimate for some formats; a shortfall of more than a few
    # frames means the stream broke off.
    if info.frame_count and info.frames_read < info.frame_count - max(2, info.frame_count // 100):
        info.warnings.append(
            f"stream ended after {info.frames_read} of {info.frame_count} frames "
            "(damaged or cut); the frames before the break were kept"
        )


def _batch(pixels: list[np.ndarray], indices: list[int], times: list[float]) -> FrameBatch:
    """Stack per-frame arrays into one (N, H, W, C) batch."""
    return FrameBatch(
        pixels=np.stack(pixels),  # (N, H, W, C)
        frame_index=np.asarray(indices, dtype=np.int64),
        timestamp_ms=np.asarray(times, dtype=np.float64),
    )


def decode_video(path: str | Path, config: DecodeConfig) -> tuple[FrameBatch, VideoInfo]:
    """All kept frames of ``path`` in one batch (for tests and small videos)."""
    infos: list[VideoInfo] = []
    batches = list(iter_frames(path, config, infos))
    c = config.channels
    if batches:
        out = FrameBatch(
            pixels=np.concatenate([b.pixels for b in batches]),
            frame_index=np.concatenate([b.frame_index for b in batches]),
            timestamp_ms=np.concatenate([b.timestamp_ms for b in batches]),
        )
    else:
        out = FrameBatch(
            np.zeros((0, config.input_size, config.input_size, c), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, np.float64),
        )
    return out, infos[0]
