"""``models.kernels.transposed_conv``: the product-and-shifted-adds form of a transposed
convolution against ``F.conv_transpose2d``, values, gradients and chunking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.kernels import transposed_conv
from models.kernels.transposed_conv import conv_transpose2d


def _want(h, w, stride, size):
    x = F.conv_transpose2d(h, w, stride=stride)
    return F.pad(x, (0, size[1] - x.shape[3], 0, size[0] - x.shape[2]))


@pytest.mark.parametrize("h_shape,w_shape,stride,size", [
    ((3, 32, 10, 10), (32, 1, 7, 7), 1, (16, 16)),   # a ConvRBM on grey frames
    ((2, 5, 6, 4), (5, 3, 4, 4), 1, (9, 7)),         # several channels, non-square grid
    ((2, 4, 5, 6), (4, 2, 3, 3), 2, (11, 13)),       # strided, exactly covered
    ((2, 4, 5, 6), (4, 2, 3, 3), 3, (16, 19)),       # strided, a border no filter reaches
    ((1, 6, 1, 1), (6, 2, 5, 5), 1, (5, 5)),         # one position
])
def test_equals_conv_transpose2d(h_shape, w_shape, stride, size):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(*h_shape, generator=g, dtype=torch.float64)
    w = torch.randn(*w_shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(conv_transpose2d(h, w, stride, size), _want(h, w, stride, size))


def test_chunks_of_the_batch_give_the_same_values(monkeypatch):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(7, 8, 9, 9, generator=g, dtype=torch.float64)
    w = torch.randn(8, 2, 4, 4, generator=g, dtype=torch.float64)
    whole = conv_transpose2d(h, w, 1, (12, 12))
    per_input = 2 * 4 * 4 * 9 * 9 * 8
    monkeypatch.setattr(transposed_conv, "COLS_BUDGET_BYTES", 3 * per_input)  # chunks of 3
    torch.testing.assert_close(conv_transpose2d(h, w, 1, (12, 12)), whole)
    torch.testing.assert_close(whole, _want(h, w, 1, (12, 12)))


def test_gradients_equal_conv_transpose2d_autograd():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, 2, 12, 12, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((conv_transpose2d(h, w, 2, (12, 12)) * probe).sum(), (h, w))
    want = torch.autograd.grad((_want(h, w, 2, (12, 12)) * probe).sum(), (h, w))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_refuses_a_size_the_grid_does_not_fit():
    h, w = torch.zeros(1, 2, 5, 5), torch.zeros(2, 1, 3, 3)
    with pytest.raises(ValueError, match="smaller than a 5x5 grid"):
        conv_transpose2d(h, w, 1, (6, 7))
