"""Spherical k-means against a loop over points; statistics add over shards; it finds clusters."""

from __future__ import annotations

import torch

from models.competitive.spherical_kmeans import SphericalKMeans, normalise_rows
from tests.models.helpers import DT, gen


def loop_statistics(D, x):
    K, d = D.shape
    sums, counts = torch.zeros(K, d, dtype=DT), torch.zeros(K, dtype=DT)
    for row in x:
        u = row / row.norm()
        sims = [float(D[k] @ u) for k in range(K)]
        k = max(range(K), key=lambda j: sims[j])
        sums[k] += sims[k] * u
        counts[k] += 1
    return sums, counts


def test_statistics_equal_a_loop_and_add_over_shards():
    km = SphericalKMeans(5, generator=gen(1))
    x = torch.randn(40, 7, generator=gen(2), dtype=DT)
    km.init(7, DT)
    stats = km.statistics(x)
    sums, counts = loop_statistics(km.centroids_, x)
    torch.testing.assert_close(stats["sums"], sums)
    torch.testing.assert_close(stats["counts"], counts)
    a, b = km.statistics(x[:15]), km.statistics(x[15:])
    torch.testing.assert_close(a["sums"] + b["sums"], stats["sums"])
    km2 = SphericalKMeans(5, generator=gen(1))
    km2.centroids_ = km.centroids_.clone()
    km.apply_statistics(stats)
    km2.apply_statistics({k: a[k] + b[k] for k in a})
    torch.testing.assert_close(km.centroids_, km2.centroids_)
    torch.testing.assert_close(km.centroids_.norm(dim=1), torch.ones(5, dtype=DT))


def test_fit_recovers_directions_and_reseeds_empty_clusters():
    g = gen(3)
    true = normalise_rows(torch.randn(4, 10, generator=g, dtype=DT))
    x = true.repeat(50, 1) + 0.1 * torch.randn(200, 10, generator=g, dtype=DT)
    km = SphericalKMeans(4, generator=gen(4))
    km.init(10, DT)
    km.centroids_[1:] = km.centroids_[0]  # three duplicates: two of them win nothing
    km.fit(x, n_iter=15)
    best = (km.centroids_ @ true.T).max(0).values  # each true direction's closest centroid
    assert bool((best > 0.98).all()), best
    sim = km.transform(x)
    assert sim.shape == (200, 4) and float(sim.max()) <= 1.0 + 1e-9


def test_empty_clusters_reseed_one_at_a_time_at_different_rows():
    """Two empty clusters and three rows the kept centroid explains badly: the first empty
    cluster takes the worst-explained row, the second the worst once that one is taken, not
    the same row again (which left two equal centroids, one of them empty for ever after).
    The fit test above recovers from that over its iterations, so it passed."""
    km = SphericalKMeans(3, generator=gen(0))
    e = torch.eye(4, dtype=DT)
    km.centroids_ = e[:3].clone()
    rows = torch.stack([-e[0], -e[0] + 0.1 * e[1], e[3]])  # worst: -e0, then e3 (cos 0)
    stats = {"sums": torch.zeros(3, 4, dtype=DT), "counts": torch.tensor([5.0, 0.0, 0.0])}
    km.apply_statistics(stats, reseed_from=rows)
    torch.testing.assert_close(km.centroids_[0], e[0])
    torch.testing.assert_close(km.centroids_[1], -e[0])
    torch.testing.assert_close(km.centroids_[2], e[3])
