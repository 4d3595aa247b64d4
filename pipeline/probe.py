"""Labelled probe sets for selectivity: a folder of class subfolders, or the built-in one.

A probe folder holds one subfolder per class (``faces/``, ``other/``, ...), each with images any
OpenCV build reads. Every image goes through the frames' own path: :func:`pipeline.decode.
convert_frame` with the dataset's ingest options (centre square crop, grey or RGB, resize), so
a probe image reaches the model exactly as a video frame would. Class names are kept as the
folder names (untrusted text: whoever renders them escapes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.decode import DecodeConfig, convert_frame

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class ProbeError(ValueError):
    """A probe that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Probe:
    """``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) indexing ``classes``."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def builtin_probe(config: DecodeConfig) -> Probe:
    """``pipeline.demo_corpus.probe_set()`` at the frames' size: classes ``faces``, ``other``."""
    from pipeline.demo_corpus import probe_set

    x, y = probe_set(size=config.input_size or 64)  # (N, 1, S, S) grey
    if config.channels == 3:
        x = np.repeat(x, 3, axis=1)  # grey -> equal RGB channels
    # label 1 = face -> class 0 "faces"; label 0 -> class 1 "other"
    return Probe(np.ascontiguousarray(x), (1 - y).astype(np.int64), ("faces", "other"), "builtin")


def load_probe_folder(root: str | Path, config: DecodeConfig) -> Probe:
    """Read every image of ``root/<class>/`` through :func:`convert_frame`.

    Raises
    ------
    ProbeError : no such folder, fewer than two non-empty classes, or an unreadable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ProbeError(f"probe folder {root} not found: give a folder with one subfolder "
                         "per class (e.g. faces/, other/)")
    images, labels, classes = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            continue
        for f in files:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ProbeError(f"cannot read image {f}: remove it or convert it to PNG/JPEG")
            images.append(convert_frame(bgr, config).transpose(2, 0, 1))  # HWC -> CHW
            labels.append(len(classes))
        classes.append(sub.name)
    if len(classes) < 2:
        raise ProbeError(f"probe folder {root} has {len(classes)} class subfolder(s) with "
                         f"images ({', '.join(IMAGE_EXTS)}); it needs at least two")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ProbeError(f"probe images of {root} have different shapes {sorted(shapes)}: "
                         "the dataset was ingested with --input-size 0; re-ingest with a fixed "
                         "--input-size")
    return Probe(np.stack(images), np.asarray(labels, np.int64), tuple(classes), str(root))
