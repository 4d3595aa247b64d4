"""Labelled probe sets for selectivity: a folder of class subfolders, or the built-in one.

A probe folder holds one subfolder per class (``faces/``, ``other/``, ...), each with images any
OpenCV build reads. Every image goes through the frames' own path: :func:`pipeline.decode.
convert_frame` with the dataset's ingest options (centre square crop, grey or RGB, resize), so
a probe image reaches the model exactly as a video frame would. Class names are kept as the
folder names (untrusted text: whoever renders them escapes them).

The built-in probe (:mod:`pipeline.demo_probe`) also carries what a folder cannot say: which
images belong together (``groups``: a face and its twins, kept on one side of every held-out
split), where the face is (``boxes``), which part is for tuning and which for reporting
(``parts``), and which classes the headline compares the positive class against
(``negatives``: the twins, not the bare backgrounds).
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
    """``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) indexing ``classes``.

    Optional (``None`` for a folder probe): ``groups`` int64 (N,) (images of one group stay on
    one side of a split; default: each image its own group), ``boxes`` int64 (N, 4)
    ``[y0, x0, y1, x1]`` of the object in image pixels, ``parts`` (N,) ``"tune"`` /
    ``"report"`` (default: all ``"report"``), ``negatives`` the classes the headline compares
    the positive class with (default: every other class).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    groups: np.ndarray | None = None
    boxes: np.ndarray | None = None
    parts: np.ndarray | None = None
    negatives: tuple[str, ...] | None = None

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}

    def select(self, keep: np.ndarray) -> Probe:
        """The probe restricted to the images where ``keep`` (N,) bool is true."""
        def cut(a):
            return None if a is None else a[keep]
        return Probe(self.images[keep], self.labels[keep], self.classes, self.source,
                     cut(self.groups), cut(self.boxes), cut(self.parts), self.negatives)

    def part(self, name: str) -> Probe:
        """Only the ``"tune"`` or ``"report"`` part (``"all"``: every image)."""
        if name == "all" or self.parts is None:
            return self
        return self.select(self.parts == name)


def builtin_probe(config: DecodeConfig, match: bool = True) -> Probe:
    """:func:`pipeline.demo_probe.probe_set` through the frames' decode path
    (:func:`convert_frame`): classes ``faces``, ``non_faces`` (the twins, the headline's
    negatives) and ``backgrounds``; boxes scaled to the decoded size. ``match=False``: the
    patches pasted without the region's mean and spread (only to measure that matching)."""
    from pipeline.demo_probe import CLASSES, probe_set

    p = probe_set(match=match)
    images = [convert_frame(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), config).transpose(2, 0, 1)
              for im in p.images]  # HWC -> CHW
    x = np.ascontiguousarray(np.stack(images))
    scale = x.shape[2] / p.images.shape[1]
    boxes = np.round(p.boxes * scale).astype(np.int64)
    return Probe(x, p.labels, CLASSES, "builtin", p.groups, boxes, p.parts, ("non_faces",))


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
