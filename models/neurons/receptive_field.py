"""Receptive field of a unit in input pixels, from the stack's geometry alone.

Along one axis, hidden positions ``a..b`` of a stage (field ``r``, stride ``s``) see that stage's
input positions ``a s .. b s + r - 1``; pooled positions ``a..b`` (window ``q``, stride ``t``)
pool hidden positions ``a t .. b t + q - 1``; a stage's input positions are the previous stage's
pooled positions. Walking down to stage 0 gives the pixels. The contrast normalisations are not
part of the field: their Gaussian windows rescale a unit's input, they do not drive it. A
competitive stage's unit pools over every position and size: its field is the whole frame.
"""

from __future__ import annotations

from models.stack import StackConfig


def pixel_span(config: StackConfig, stage: int, layer: str, lo: int, hi: int) -> tuple[int, int]:
    """Half-open pixel range ``[p0, p1)`` seen by positions ``lo..hi`` (inclusive) of a layer."""
    if config.stages[stage].kind == "competitive":
        return 0, config.input_size
    for k in range(stage, -1, -1):
        st = config.stages[k]
        if k < stage or layer == "pooled":
            lo, hi = lo * st.pool_stride, hi * st.pool_stride + st.pool - 1  # pooled -> hidden
        lo, hi = lo * st.stride, hi * st.stride + st.field - 1  # hidden -> stage input
    return lo, hi + 1


def unit_box(config: StackConfig, stage: int, layer: str, y: int, x: int) -> list[int]:
    """``[y0, x0, y1, x1]`` (half-open) pixel box of the unit at position (y, x) of a layer."""
    y0, y1 = pixel_span(config, stage, layer, y, y)
    x0, x1 = pixel_span(config, stage, layer, x, x)
    return [y0, x0, y1, x1]
