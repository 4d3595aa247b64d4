"""Invariance transforms: identity, exact shifts and quarter turns; curves on a planted unit."""

from __future__ import annotations

import torch

from models.neurons.invariance import affine_about, invariance_curves, transform_frames


def frames(n: int = 2, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)


def test_identity_shift_and_rotation_are_exact():
    x = frames()
    centre = (3.5, 3.5)  # the middle of an 8x8 frame
    torch.testing.assert_close(transform_frames(x, affine_about(centre, (8, 8))), x)
    moved = transform_frames(x, affine_about(centre, (8, 8), shift=2))
    torch.testing.assert_close(moved[..., 2:], x[..., :-2])  # content moved 2 px right
    turned = transform_frames(x, affine_about(centre, (8, 8), degrees=90))
    torch.testing.assert_close(turned, torch.rot90(x, 1, dims=(2, 3)))  # counter-clockwise
    half = transform_frames(x, affine_about(centre, (8, 8), scale=2.0))
    assert half.shape == x.shape and not torch.allclose(half, x)


def test_scaling_about_a_centre_keeps_the_centre_pixel():
    x = frames(1, 9)
    out = transform_frames(x, affine_about((2.0, 6.0), (9, 9), scale=1.7))
    torch.testing.assert_close(out[0, 0, 2, 6], x[0, 0, 2, 6])


def test_curves_of_a_planted_unit():
    """A unit reading pixel (4, 4) after a bright dot there: peak response untransformed."""
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1.0
    curves = invariance_curves(lambda f: f[:, 0, 4, 4], x, (4.0, 4.0),
                               scales=(0.5, 1.0, 2.0), degrees=(-90, 0, 45), shifts=(-2, 0, 2))
    assert set(curves) == {"scale", "rotation", "translation"}
    assert curves["translation"] == [[-2.0, 0.0], [0.0, 1.0], [2.0, 0.0]]
    assert [r for _, r in curves["rotation"]] == [1.0, 1.0, 1.0]  # a dot at the centre
    assert curves["scale"][1] == [1.0, 1.0]
