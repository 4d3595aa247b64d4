"""The parameter-server shard body (cluster/ps.py), without Ray."""

import os

import numpy as np
import pytest
import torch

from cluster.ps import OutOfStep, ParameterShard
from cluster.sharding import ShardLayout, combine_updates, to_numpy
from models.rbm.optim import ParameterUpdater, UpdateConfig
from models.state_file import UnsafeStateFile
from tests.cluster.data import SHAPES, random_tensors


@pytest.mark.parametrize("method", ["sgd", "adagrad"])
def test_sharded_updates_equal_full_updates(method):
    """Each shard's ParameterUpdater on its slices == one updater on the full tensors."""
    cfg = UpdateConfig(learning_rate=0.05, method=method, momentum_switch_step=2)
    layout = ShardLayout.plan(SHAPES, 3)
    full = random_tensors(1)
    full_updater = ParameterUpdater(cfg, ("W",))
    shards = [ParameterShard(j, layout.to_dict(), cfg, ("W",), to_numpy(layout.split(full, j)))
              for j in range(3)]
    for step in range(5):
        u = random_tensors(100 + step)
        full_updater.step(full, u)
        for j, s in enumerate(shards):
            assert s.push(0, step, to_numpy(layout.split(u, j))) == step
    joined = layout.join([s.fetch()[1] for s in shards])
    for k in full:
        torch.testing.assert_close(joined[k], full[k], rtol=0, atol=1e-6)


def test_duplicate_push_is_not_applied_twice():
    layout = ShardLayout.plan(SHAPES, 1)
    cfg = UpdateConfig(learning_rate=0.1, momentum=0.0, initial_momentum=0.0, weight_decay=0.0)
    p0 = random_tensors(2)
    shard = ParameterShard(0, layout.to_dict(), cfg, ("W",), to_numpy(p0))
    u = to_numpy(random_tensors(3))
    assert shard.push(worker=1, seq=0, update=u) == 0
    once = {k: v.copy() for k, v in shard.fetch()[1].items()}
    assert shard.push(worker=1, seq=0, update=u) == -1  # a replayed / retried push
    assert shard.push(worker=1, seq=-5, update=u) == -1
    for k, v in shard.fetch()[1].items():
        np.testing.assert_array_equal(v, once[k])
        np.testing.assert_allclose(v, p0[k].numpy() + 0.1 * u[k], rtol=1e-6)
    assert shard.push(worker=2, seq=0, update=u) == 1  # another worker's seq 0 is its own
    info = shard.info()
    assert (info["n_applied"], info["n_rejected"]) == (2, 2)


def test_apply_sync_combines_in_order_and_refuses_skipped_steps(tmp_path):
    layout = ShardLayout.plan(SHAPES, 1)
    cfg = UpdateConfig(learning_rate=1.0, momentum=0.0, initial_momentum=0.0, weight_decay=0.0)
    p0 = random_tensors(4)
    shard = ParameterShard(0, layout.to_dict(), cfg, ("W",), to_numpy(p0))
    u1, u2 = to_numpy(random_tensors(5)), to_numpy(random_tensors(6))
    out = shard.apply_sync(0, u1, u2)
    mean = combine_updates([u1, u2])
    for k in p0:
        torch.testing.assert_close(torch.from_numpy(out[k]), p0[k] + mean[k])
    assert shard.info()["seconds_apply"] > 0  # a sync apply is timed as a push's is
    again = shard.apply_sync(0, u1, u2)  # step 0 again: not applied twice
    for k in p0:
        np.testing.assert_array_equal(again[k], out[k])
    with pytest.raises(OutOfStep):
        shard.apply_sync(2, u1, u2)  # step 1 is missing
    # save / restore through the checkpoint folder protocol (LATEST -> folder -> shard0.pt)
    folder = tmp_path / "step00000001"
    folder.mkdir()
    shard.save(str(folder / "shard0.pt"))
    (tmp_path / "LATEST").write_text(folder.name)
    restored = ParameterShard(0, layout.to_dict(), cfg, ("W",), to_numpy(p0), str(tmp_path))
    assert restored.restored_from == str(folder)
    for k, v in restored.fetch()[1].items():
        np.testing.assert_array_equal(v, out[k])
    restored.apply_sync(1, u1, u2)  # continues at the next step
    # a checkpoint written under another layout (here: 1 shard, resumed with 2) is refused
    other = ShardLayout.plan(SHAPES, 2)
    with pytest.raises(ValueError, match="another n_ps_shards"):
        ParameterShard(0, other.to_dict(), cfg, ("W",), None, str(tmp_path))


def test_shard_refuses_a_checkpoint_that_carries_code(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    layout = ShardLayout.plan(SHAPES, 1)
    cfg = UpdateConfig()
    folder = tmp_path / "step00000001"
    folder.mkdir()
    torch.save({"index": 0, "params": RunsCode()}, folder / "shard0.pt")
    (tmp_path / "LATEST").write_text(folder.name)
    with pytest.raises(UnsafeStateFile, match="shard0.pt holds more than tensors"):
        ParameterShard(0, layout.to_dict(), cfg, ("W",), to_numpy(random_tensors(0)), str(tmp_path))
    assert not (tmp_path / "ran").exists()


def test_a_shard_counts_the_bytes_it_moves_and_the_memory_it_holds():
    from cluster.sharding import pack

    layout = ShardLayout.plan(SHAPES, 1)
    p0 = random_tensors(0)
    params = sum(t.numel() for t in p0.values())
    for deltas, states in ((True, 0), (False, 1)):
        shard = ParameterShard(0, layout.to_dict(), UpdateConfig(learning_rate=0.1), ("W",),
                               to_numpy(p0), deltas=deltas)
        update = pack(random_tensors(1), "bfloat16")  # 2 bytes a value on the wire
        shard.push(0, 0, update, reply="bfloat16")
        shard.fetch("float32")
        shard.push(0, 0, update)  # a duplicate is received, and refused
        info = shard.info()
        assert info["bytes_in"] == 2 * 2 * params and info["n_rejected"] == 1
        assert info["bytes_out"] == 2 * params + 4 * params
        assert info["memory_bytes"] == 4 * params * (1 + states)  # slices (+ velocity)


def test_a_checkpoint_of_nan_parameters_is_refused_between_periodic_checks(tmp_path):
    """The shard checks its parameters every 50 updates; a stage that pushes every few steps
    may end before the first check, so a checkpoint (the stage's end among them) checks too."""
    layout = ShardLayout.plan(SHAPES, 1)
    cfg = UpdateConfig(learning_rate=0.1, momentum=0.0, initial_momentum=0.0, weight_decay=0.0)
    shard = ParameterShard(0, layout.to_dict(), cfg, ("W",), to_numpy(random_tensors(2)))
    bad = {k: np.full_like(v, np.inf) for k, v in to_numpy(random_tensors(3)).items()}
    assert shard.push(worker=0, seq=0, update=bad) == 0  # one update: no periodic check yet
    with pytest.raises(FloatingPointError, match="lower update.learning_rate"):
        shard.save(str(tmp_path / "shard0.pt"))
    assert not (tmp_path / "shard0.pt").exists()
