"""The pictures of one stage's units for ``catneuron visualize``: weights (or their projection to
pixels), top frames with the exciting patch marked, optimal stimuli, invariance curves.

Each writer saves PNGs under ``out/stage{k}/`` and returns, per unit index, the JSON fields of
``RUN/visualize/stage{k}.json`` (paths relative to ``out``), as set in ``jobs/RUN_FILES.md``.
Every writer takes the units' ``layer`` (``"pooled"``, the default, or ``"hidden"``): file names
are ``stage{k}/unit{i}_*.png`` for pooled units and ``stage{k}/{layer}{i}_*.png`` for the others
(:func:`stem`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from jobs.report.plots import (
    mark_box,
    save_image,
    save_invariance,
    signed_image,
    tile_grid,
    to_rgb,
    upscale,
)
from models.neurons.invariance import invariance_curves
from models.neurons.projection import pixel_projections, pooled_fields
from models.neurons.receptive_field import unit_box
from models.neurons.stimulus import StimulusConfig, optimal_stimuli, unit_objective
from models.neurons.units import layer_maps, layer_shape, unit_position
from models.stack import RBMStack

LAYER = "pooled"
STAGE0_LABEL = "receptive-field weights of the pooled hidden units"
PROJECTION_LABEL = "linear projection to pixels (weighted sum of stage-0 fields)"
HIDDEN0_LABEL = "receptive-field weights of the hidden unit"


def stem(stage: int, layer: str, index: int) -> str:
    """The file-name stem of a unit's pictures: ``stage1/unit4`` (pooled), ``stage1/hidden4``."""
    return f"stage{stage}/unit{index}" if layer == LAYER else f"stage{stage}/{layer}{index}"


def box_of(stack: RBMStack, stage: int, index: int, layer: str = LAYER) -> list[int]:
    """Pixel box [y0, x0, y1, x1] (half-open) of a unit of ``layer``."""
    _, y, x = unit_position(layer_shape(stack.config, stage, layer), index)
    return unit_box(stack.config, stage, layer, y, x)


def weight_tiles(stack: RBMStack, stage: int, units: list[int],
                 layer: str = LAYER) -> dict[int, np.ndarray]:
    """Per unit an (H, W, 3) image: a stage-0 pooled unit the pool window's fields side by side,
    any other unit its linear projection to pixels cropped to its box (for a stage-0 hidden unit
    that is exactly its own field ``W[p, k]``)."""
    shape = layer_shape(stack.config, stage, layer)
    if stage == 0 and layer == LAYER and stack.config.stages[0].kind == "local":
        tiles = {}
        for i in units:
            f = pooled_fields(stack, *unit_position(shape, i))  # (q, q, C, r, r)
            q = f.shape[0]
            tiles[i] = tile_grid([signed_image(f[a, b].numpy()) for a in range(q)
                                  for b in range(q)], q)
        return tiles
    proj = pixel_projections(stack, stage, layer, torch.tensor(units)).numpy()  # (U, C, S, S)
    tiles = {}
    for u, i in enumerate(units):
        y0, x0, y1, x1 = box_of(stack, stage, i, layer)
        tiles[i] = signed_image(proj[u][:, y0:y1, x0:x1])
    return tiles


def write_weights(stack: RBMStack, stage: int, units: list[int], listed: list[int] | None,
                  out: Path, layer: str = LAYER) -> dict[int, dict]:
    """``{stem}_weights.png`` per unit of ``units`` and, unless ``listed`` is None, the
    stage's mosaic of ``listed`` (pooled units)."""
    tiles = weight_tiles(stack, stage, units, layer)
    local0 = stage == 0 and stack.config.stages[0].kind == "local"
    label = STAGE0_LABEL if local0 and layer == LAYER else (
        HIDDEN0_LABEL if local0 else PROJECTION_LABEL)
    fields = {}
    for i, tile in tiles.items():
        png = f"{stem(stage, layer, i)}_weights.png"
        save_image(out / png, upscale(tile))
        fields[i] = {"weights_png": png, "weights_label": label}
    if listed is not None:
        save_image(out / f"stage{stage}/mosaic.png", mosaic(stack, stage, listed, tiles))
    return fields


def mosaic(stack: RBMStack, stage: int, units: list[int], tiles: dict[int, np.ndarray]):
    """Stage 0 (all units listed): each map's units on their (y, x) grid, showing the centre
    field of each pool window, maps side by side; above: the projections of ``units`` (all in
    ``tiles``)."""
    if stage != 0 or stack.config.stages[0].kind != "local":
        return upscale(tile_grid([tiles[i] for i in units], min(8, len(units))), 256)
    C, H, W = layer_shape(stack.config, 0, LAYER)
    centre = {}
    for i in units:
        f = pooled_fields(stack, *unit_position((C, H, W), i))  # (q, q, C, r, r)
        centre[i] = signed_image(f[f.shape[0] // 2, f.shape[0] // 2].numpy())
    maps = [tile_grid([centre[i] for i in sorted(units) if i // (H * W) == m], W)
            for m in range(C)]
    return upscale(tile_grid(maps, min(4, C), gap=4), 256)


def write_top_frames(stack: RBMStack, stage: int, units: list[int], values: torch.Tensor,
                     ids: torch.Tensor, frames: dict[int, tuple[np.ndarray, dict]],
                     out: Path, layer: str = LAYER) -> dict[int, list[dict]]:
    """``{stem}_top{j}.png``: top frame j with the unit's field boxed. ``values``,
    ``ids`` (U, k) are rows of the top-k in ``units`` order."""
    result = {}
    for u, i in enumerate(units):
        box = box_of(stack, stage, i, layer)
        entries = []
        for j, (v, fid) in enumerate(zip(values[u].tolist(), ids[u].tolist(), strict=True)):
            frame, meta = frames[int(fid)]
            png = f"{stem(stage, layer, i)}_top{j}.png"
            factor = max(1, -(-128 // frame.shape[-1]))
            save_image(out / png, mark_box(to_rgb(frame / 255.0), box, factor))
            entries.append({"png": png, "source": meta["source"],
                            "frame_index": meta["frame_index"], "activation": float(v),
                            "box": box})
        result[i] = entries
    return result


def write_stimuli(stack: RBMStack, stage: int, units: list[int], config: StimulusConfig,
                  out: Path, *, generator: torch.Generator, chunk: int = 64,
                  progress: Callable[[int], None] = lambda n: None,
                  layer: str = LAYER) -> dict[int, dict]:
    """``{stem}_optimal.png``: the unit-norm input maximising the unit, cropped to
    its field; searched ``chunk`` units at a time."""
    shape = (stack.config.channels, stack.config.input_size, stack.config.input_size)
    result = {}
    for lo in range(0, len(units), chunk):
        part = units[lo : lo + chunk]
        f = unit_objective(stack, stage, layer, torch.tensor(part))
        x, a = optimal_stimuli(f, len(part), shape, config, generator=generator,
                               device=stack.device, dtype=stack.dtype)
        for u, i in enumerate(part):
            y0, x0, y1, x1 = box_of(stack, stage, i, layer)
            png = f"{stem(stage, layer, i)}_optimal.png"
            save_image(out / png, upscale(signed_image(x[u, :, y0:y1, x0:x1].cpu().numpy())))
            result[i] = {"png": png, "activation": float(a[u]), "n_starts": config.n_starts}
        progress(len(part))
    return result


def write_invariance(stack: RBMStack, stage: int, units: Iterable[int],
                     top_frames: dict[int, np.ndarray], out: Path,
                     layer: str = LAYER) -> dict[int, dict]:
    """``{stem}_invariance.png``: mean response to the unit's top frames (uint8
    (k, C, S, S)) under scaling, rotation (about its field's centre) and translation."""
    result = {}
    for i in units:
        y0, x0, y1, x1 = box_of(stack, stage, i, layer)
        frames = torch.from_numpy(top_frames[i]).to(stack.device, stack.dtype) / 255.0

        def respond(x: torch.Tensor, i: int = i) -> torch.Tensor:
            return layer_maps(stack, x, stage, layer).flatten(1)[:, i]

        curves = invariance_curves(respond, frames, ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2))
        png = f"{stem(stage, layer, i)}_invariance.png"
        save_invariance(out / png, curves, f"stage {stage} {layer} unit {i}")
        result[i] = {"png": png, "curves": curves}
    return result
