"""The counter-based random numbers (models/kernels/counter_rng.py) against what they replace:
uniformity and independence statistics (they must not bias the Gibbs sampler), and determinism
whatever numba's thread count."""

import math

import pytest
import torch

from models.kernels import counter_rng
from models.rbm.dense import bernoulli_sample

pytestmark = pytest.mark.skipif(not counter_rng.HAVE_NUMBA, reason="numba not installed")


def test_uniform_is_uniform_and_independent():
    g = torch.Generator().manual_seed(0)
    u = counter_rng.uniform_(torch.empty(1 << 20), g)
    assert 0.0 <= u.min().item() and u.max().item() < 1.0
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
    # chi-square over 64 bins: 63 degrees of freedom, mean 63, sd ~11.2; 63 + 6 sd = 130
    counts = torch.histc(u, bins=64, min=0.0, max=1.0)
    expected = u.numel() / 64
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 130, chi2
    # neighbours (the two halves of one splitmix64 output, and consecutive outputs) uncorrelated
    for lag in (1, 2, 7):
        r = torch.corrcoef(torch.stack([u[:-lag], u[lag:]]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(u.numel()), (lag, r)


def test_same_generator_seed_same_numbers_any_thread_count():
    a = counter_rng.uniform_(torch.empty(200_000), torch.Generator().manual_seed(3))
    b = counter_rng.uniform_(torch.empty(200_000), torch.Generator().manual_seed(3))
    c = counter_rng.uniform_(torch.empty(200_000), torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    import numba

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        flat = torch.empty(200_000)
        key = counter_rng.draw_key(torch.Generator().manual_seed(3))
        counter_rng.fill_uniform(flat.numpy(), key)
    finally:
        numba.set_num_threads(before)
    assert torch.equal(a, flat)


def test_bernoulli_frequencies_match_probabilities():
    g = torch.Generator().manual_seed(1)
    p = torch.linspace(0.0, 1.0, 11).repeat(20_000)  # 220k: the parallel numba path
    h = bernoulli_sample(p.contiguous(), g)
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    freq = h.view(-1, 11).mean(0)
    sd = torch.sqrt(torch.linspace(0.0, 1.0, 11) * (1 - torch.linspace(0.0, 1.0, 11)) / 20_000)
    assert torch.all((freq - torch.linspace(0.0, 1.0, 11)).abs() <= 5 * sd + 1e-7), freq
    assert freq[0] == 0.0 and freq[-1] == 1.0
    # NaN probabilities sample 0 (divergence surfaces in check_finite, as on the torch path)
    q = torch.full((5000,), float("nan"))
    assert bernoulli_sample(q, g).sum() == 0


def test_bernoulli_serial_and_parallel_paths_agree_with_torch_statistics():
    g = torch.Generator().manual_seed(2)
    for n in (5_000, 100_000):  # serial, parallel
        p = torch.full((n,), 0.3, dtype=torch.float64)
        h = bernoulli_sample(p, g)
        assert h.dtype == torch.float64
        assert abs(h.mean().item() - 0.3) < 5 * math.sqrt(0.21 / n)


def _spy_kernels(monkeypatch) -> list[str]:
    """The names of the numba Bernoulli kernels called from now on, in order (each still runs)."""
    calls: list[str] = []
    for name in ("fill_bernoulli", "fill_bernoulli_serial"):
        kernel = getattr(counter_rng, name)

        def spy(*args, _kernel=kernel, _name=name):
            calls.append(_name)
            return _kernel(*args)

        monkeypatch.setattr(counter_rng, name, spy)
    return calls


def test_non_contiguous_input_takes_the_torch_path(monkeypatch):
    """A strided probability runs no numba kernel and gets torch.rand's draws exactly; its
    contiguous copy runs the counter-based kernel (other draws)."""
    calls = _spy_kernels(monkeypatch)
    p = torch.rand(300, 400, generator=torch.Generator().manual_seed(5)).t()  # not contiguous
    h = bernoulli_sample(p, torch.Generator().manual_seed(7))
    expected = torch.rand(p.shape, generator=torch.Generator().manual_seed(7)).lt_(p)
    assert calls == []
    assert torch.equal(h, expected)  # the uniforms are torch.rand's, drawn in p's shape
    hc = bernoulli_sample(p.contiguous(), torch.Generator().manual_seed(7))
    assert calls == ["fill_bernoulli"]  # 120000 elements: the parallel kernel
    assert not torch.equal(hc, expected)
