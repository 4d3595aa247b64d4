"""Fixtures for pipeline tests: small real video files and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest


def make_video(path: Path, n_frames: int = 60, w: int = 96, h: int = 72, fourcc: str = "mp4v",
               fps: float = 25.0, seed: int = 0) -> Path:
    """Write a real video: moving colour gradients plus noise, different on every frame."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write {fourcc} to {path}"
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    for i in range(n_frames):
        bgr = np.stack(
            [(x * 2 + i * 3 + 0 * y) % 256, (y * 3 + i * 5 + 0 * x) % 256, (x + y + i * 7) % 256],
            axis=-1,
        ).astype(np.int16)
        bgr += rng.integers(-8, 9, bgr.shape, dtype=np.int16)
        writer.write(np.clip(bgr, 0, 255).astype(np.uint8))
    writer.release()
    return path


def cv2_frames(path: Path) -> list[np.ndarray]:
    """Every frame ``cv2.VideoCapture`` returns (BGR)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture
def video(tmp_path):
    """A 60-frame 96x72 MP4."""
    return make_video(tmp_path / "clip.mp4")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@pytest.fixture
def http_dir(tmp_path):
    """(folder, base_url): a static HTTP server on 127.0.0.1 serving ``folder``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    """A loopback URL nobody listens on (connection refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/missing.mp4"
