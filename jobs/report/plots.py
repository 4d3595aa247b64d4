"""Every image and figure file of ``catneuron visualize`` and the gallery: weight tiles, mosaics,
marked frames, line plots (training curves) and invariance panels.

Images are numpy arrays scaled to [0, 1], written with OpenCV (thousands of small PNGs: it is
the fast path). Figures are drawn with matplotlib's object-oriented API (a ``Figure`` on its own
Agg canvas: no display, no pyplot global state, nothing to close), each by one function here.
Signed weights map 0 to mid-grey and +-max|w| to white/black, so the sign pattern of a field is
visible whatever its scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BOX_COLOUR = (1.0, 0.15, 0.1)
#: x-axis label of each invariance curve (:func:`models.neurons.invariance.invariance_curves`)
INVARIANCE_AXES = {"scale": "scale factor", "rotation": "rotation (degrees)",
                   "translation": "horizontal shift (pixels)"}
Points = Sequence[Sequence[float]]  # [(x, y), ...]


def signed_image(w: np.ndarray) -> np.ndarray:
    """(C, H, W) signed values -> (H, W, 3) in [0, 1], 0 at grey, shared scale max|w|."""
    w = np.asarray(w, dtype=np.float64)
    scale = float(np.abs(w).max()) or 1.0
    img = 0.5 + 0.5 * w / scale  # (C, H, W)
    return to_rgb(img)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] with C = 1 or 3 -> (H, W, 3)."""
    img = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    return img[:3].transpose(1, 2, 0)


def upscale(img: np.ndarray, min_side: int = 96) -> np.ndarray:
    """Nearest-neighbour upscaling of (H, W, 3) by an integer factor to at least ``min_side``."""
    f = max(1, math.ceil(min_side / max(1, min(img.shape[:2]))))
    return img.repeat(f, axis=0).repeat(f, axis=1)


def tile_grid(tiles: Sequence[np.ndarray], n_cols: int, gap: int = 1) -> np.ndarray:
    """(H, W, 3) tiles of one size laid out row-major in ``n_cols`` columns, white gaps."""
    h, w = tiles[0].shape[:2]
    n_rows = -(-len(tiles) // n_cols)
    out = np.ones((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap, 3))
    for i, t in enumerate(tiles):
        r, c = divmod(i, n_cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = t
    return out


def mark_box(img: np.ndarray, box: Sequence[int], factor: int) -> np.ndarray:
    """Upscale (H, W, 3) by ``factor`` and draw the half-open box [y0, x0, y1, x1] on it."""
    out = img.repeat(factor, axis=0).repeat(factor, axis=1).copy()
    y0, x0, y1, x1 = (int(v) * factor for v in box)
    y1, x1 = min(y1, out.shape[0]) - 1, min(x1, out.shape[1]) - 1
    out[y0, x0 : x1 + 1] = out[y1, x0 : x1 + 1] = BOX_COLOUR
    out[y0 : y1 + 1, x0] = out[y0 : y1 + 1, x1] = BOX_COLOUR
    return out


def save_image(path: Path, img: np.ndarray) -> None:
    """Write (H, W, 3) RGB in [0, 1] as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb8 = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb8[:, :, ::-1])):  # OpenCV: BGR
        raise OSError(f"could not write {path}")


def new_figure(width: float, height: float) -> Figure:
    """A ``width`` x ``height`` inch, 100 dpi figure on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG (folders made); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def save_lines(path: Path, series: Mapping[str, Points], *, title: str, xlabel: str,
               ylabel: str) -> Path:
    """One line per named series of (x, y) points (a legend when there are several)."""
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    for name, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name, linewidth=1.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(series) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def save_invariance(path: Path, curves: Mapping[str, Points], title: str | None = None) -> Path:
    """One panel per transformation, in ``curves``' order: the mean response against the scale
    factor, rotation (degrees) or translation (pixels) (:data:`INVARIANCE_AXES`; another name
    labels its own axis); panels share the response axis."""
    fig = new_figure(3.0 * len(curves), 2.8)
    axes = fig.subplots(1, len(curves), sharey=True, squeeze=False)[0]
    for ax, (name, points) in zip(axes, curves.items(), strict=True):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3)
        ax.set(xlabel=INVARIANCE_AXES.get(name, str(name)[:30]))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean response")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
