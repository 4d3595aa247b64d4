"""Parameter-server shard layouts and the wire format (cluster/sharding.py)."""

import numpy as np
import pytest
import torch

from cluster.sharding import ShardLayout, to_numpy
from tests.cluster.data import SHAPES, random_tensors


@pytest.mark.parametrize("n_ps_shards", [1, 2, 3, 5, 10])
def test_layout_split_join_roundtrip(n_ps_shards):
    layout = ShardLayout.plan(SHAPES, n_ps_shards)
    t = random_tensors()
    parts = layout.split_all(t)
    assert sum(layout.numel(j) for j in range(n_ps_shards)) == sum(v.numel() for v in t.values())
    back = layout.join([to_numpy(p) for p in parts])
    for k in t:
        assert torch.equal(back[k], t[k])
    # positions spread over every shard; the visible bias goes whole to the last one
    assert all(np.diff(layout.bounds["W"][j]) >= 1 for j in range(n_ps_shards))
    assert layout.owner == {"b": n_ps_shards - 1}
    # balanced: the last shard gets fewer positions for the bias (a position is 15 values)
    sizes = [layout.numel(j) for j in range(n_ps_shards)]
    if n_ps_shards < 10:
        assert max(sizes) - min(sizes) <= 2 * 15
    assert ShardLayout.from_dict(layout.to_dict()) == layout


def test_layout_reads_the_older_checkpoint_key():
    d = ShardLayout.plan(SHAPES, 3).to_dict()
    d["n_shards"] = d.pop("n_ps_shards")
    assert ShardLayout.from_dict(d) == ShardLayout.plan(SHAPES, 3)


def test_layout_too_many_shards_names_the_limit():
    with pytest.raises(ValueError, match="at most 10 shards"):
        ShardLayout.plan(SHAPES, 11)


def test_dense_layout_by_rows():
    layout = ShardLayout.plan({"W": (7, 5), "b": (5,), "c": (7,)}, 3)
    assert layout.bounds["W"] == ((0, 2), (2, 5), (5, 7))
    assert layout.owner == {"b": 2}


def test_bfloat16_transfer_halves_bytes_and_rounds_to_nearest():
    from cluster.sharding import as_tensor, pack

    t = {"W": torch.randn(300, 7) * 1e-3, "b": torch.tensor([1.0, -2.5, 3e-30, 1e30])}
    packed = pack(t, "bfloat16")
    assert all(a.dtype == np.uint16 for a in packed.values())
    assert sum(a.nbytes for a in packed.values()) * 2 == sum(a.nbytes for a in pack(t).values())
    for k, v in t.items():
        back = as_tensor(packed[k])
        assert back.dtype == torch.float32
        torch.testing.assert_close(back, v.to(torch.bfloat16).float(), rtol=0, atol=0)
        assert float(((back - v).abs() / v.abs()).max()) <= 2.0 ** -8
    with pytest.raises(ValueError, match="float16"):
        pack(t, "float16")


def test_combine_updates_is_the_mean_summed_in_worker_order_and_leaves_the_pushes_alone():
    """The synchronous step's average, against numpy: three workers' updates summed in worker
    order then divided by three (the same float32 bits), one update as it is, and no worker's
    arrays changed. The parameter server's and the single-process reference's tests compare
    against ``combine_updates`` itself (both use it), so a sum in place of the mean, or a
    first update added into in place, passed them all."""
    from cluster.sharding import combine_updates

    rng = np.random.default_rng(0)
    updates = [{"W": rng.normal(size=(4, 3)).astype(np.float32),
                "b": rng.normal(size=3).astype(np.float32)} for _ in range(3)]
    before = [{k: v.copy() for k, v in u.items()} for u in updates]
    got = combine_updates(updates)
    for k in ("W", "b"):
        want = (updates[0][k] + updates[1][k] + updates[2][k]) / np.float32(3)
        np.testing.assert_array_equal(got[k].numpy(), want)
        for u, b in zip(updates, before, strict=True):
            np.testing.assert_array_equal(u[k], b[k])
    one = combine_updates(updates[:1])
    np.testing.assert_array_equal(one["W"].numpy(), updates[0]["W"])
    with pytest.raises(ValueError, match="no updates"):
        combine_updates([])
