"""``models.kernels.fft_conv``: the FFT form of a valid cross-correlation against ``F.conv2d``,
values and gradients, and the rule that picks the form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.kernels.fft_conv import FFTConv2d, WindowConv, bin_products


@pytest.mark.parametrize("shape,kernel,stride,bias", [
    ((3, 4, 16, 16), (5, 4, 8, 8), 1, True),    # even sizes, the demo's kernel
    ((2, 3, 13, 11), (6, 3, 4, 3), 1, False),   # odd, non-square input and kernel
    ((2, 2, 15, 17), (3, 2, 5, 5), 2, True),    # strided
    ((1, 2, 5, 5), (4, 2, 5, 5), 1, True),      # one output position
])
def test_fft_form_equals_conv2d(shape, kernel, stride, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    w = torch.randn(*kernel, generator=g, dtype=torch.float64)
    b = torch.randn(kernel[0], generator=g, dtype=torch.float64) if bias else None
    conv = FFTConv2d(w, b, stride)
    want = F.conv2d(x, w, b, stride=stride)
    torch.testing.assert_close(conv(x), want)
    torch.testing.assert_close(conv(x[:1]), want[:1])  # the spectrum, cached, serves any batch


def test_fft_form_gradients_equal_conv2d_autograd():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 12, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64)
    probe = torch.randn(2, 4, 7, 7, generator=g, dtype=torch.float64)
    (got,) = torch.autograd.grad((FFTConv2d(w)(x) * probe).sum(), x)
    (want,) = torch.autograd.grad((F.conv2d(x, w) * probe).sum(), x)
    torch.testing.assert_close(got, want)


def test_fft_form_refuses_an_input_smaller_than_the_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        FFTConv2d(torch.zeros(1, 1, 5, 5))(torch.zeros(1, 1, 4, 9))


def test_window_conv_takes_the_fft_form_for_wide_kernels_only():
    wide = WindowConv(torch.zeros(192, 64, 8, 8))  # the demo's top stage: 8x8 windows
    assert all(wide.uses_fft(torch.zeros(1, 64, s, s)) for s in (32, 26, 21, 17))
    assert not WindowConv(torch.zeros(8, 4, 3, 3)).uses_fft(torch.zeros(1, 4, 13, 13))
    assert not WindowConv(torch.zeros(192, 64, 8, 8), stride=4).uses_fft(
        torch.zeros(1, 64, 32, 32))  # a strided output keeps few positions
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 20, 20, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    conv = WindowConv(w, stride=1)
    assert conv.uses_fft(x)
    torch.testing.assert_close(conv(x), F.conv2d(x, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_inputs_output_does_not_depend_on_its_batch(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 4, 18, 18, generator=g, dtype=dtype)
    w = torch.randn(6, 4, 8, 8, generator=g, dtype=dtype)
    conv = FFTConv2d(w, torch.randn(6, generator=g, dtype=dtype))
    alone = torch.cat([conv(x[i:i + 1]) for i in range(len(x))])
    for batch in (x, x.flip(0), x[2:7], x[[5, 1, 8]]):  # groups of 4 full and short, reordered
        got = conv(batch)
        want = alone[[int(torch.nonzero((x == b).flatten(1).all(1))[0]) for b in batch]]
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(WindowConv(w).each(x), FFTConv2d(w)(x), rtol=0, atol=0)


def test_bin_products_equal_bmm_and_keep_the_gradient_path():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 7, 3, generator=g, dtype=torch.complex128)
    k = torch.randn(5, 3, 6, generator=g, dtype=torch.complex128)
    parts = torch.stack([k.real, k.imag])
    torch.testing.assert_close(bin_products(x, parts), torch.bmm(x, k))
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(bin_products(x, parts).abs().sum(), x)  # bmm under autograd
    (want,) = torch.autograd.grad(torch.bmm(x, k).abs().sum(), x)
    torch.testing.assert_close(grad, want)
