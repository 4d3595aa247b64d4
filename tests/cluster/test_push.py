"""Push strategies, and the Downpour protocol with in-process shards (no Ray): one replica
alone follows the single-process trajectory with every kind of push."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import torch

from cluster.downpour import InProcess
from cluster.ps import ParameterShard
from cluster.push import DeltaPush, GradientPush, push_strategy, shards_add
from cluster.sharding import ShardLayout, to_numpy
from cluster.worker import Worker
from jobs.config import load
from models.stack import RBMStack
from tests.cluster.data import make_dataset


def test_strategy_is_chosen_once_from_the_push_kind():
    assert isinstance(push_strategy("gradient", 4), GradientPush)
    delta, average = push_strategy("delta", 4), push_strategy("average", 4)
    assert isinstance(delta, DeltaPush) and delta.weight == 1.0
    assert isinstance(average, DeltaPush) and average.weight == 0.25
    assert (shards_add("gradient"), shards_add("delta"), shards_add("average")) == (
        False, True, True)
    with pytest.raises(ValueError, match="push='deltas'"):
        push_strategy("deltas", 1)


def test_delta_push_keeps_the_replicas_unpushed_change_on_fetch():
    """Read-my-writes: replica at base + d (d unpushed); the shards moved base -> base + s;
    after the fetch the replica is at base + s + d, and its next push carries d."""
    layout = ShardLayout.plan({"W": (4, 3)}, 2)
    push = DeltaPush()
    params = {"W": torch.zeros(4, 3)}
    push.receive(params, layout, layout.split_all({"W": torch.zeros(4, 3)}), push.mark())
    params["W"] += 2.0  # the replica's own step d = 2
    mark = push.mark()
    shards = {"W": torch.full((4, 3), 5.0)}  # another replica's pushes: s = 5
    push.receive(params, layout, layout.split_all(shards), mark)
    torch.testing.assert_close(params["W"], torch.full((4, 3), 7.0))
    torch.testing.assert_close(push.take(params)["W"], torch.full((4, 3), 2.0))


class LateSender(InProcess):
    """In-process shards, but pushes leave from a real sender thread 50 ms late: a fetch
    requested meanwhile would reach the shards before them."""

    def __init__(self) -> None:
        self._sender = concurrent.futures.ThreadPoolExecutor(1)

    def submit(self, fn, *args):
        def late():
            time.sleep(0.05)
            return fn(*args)
        return self._sender.submit(late)


def _replica_and_plain_loop(tmp_path, push, transport, *overrides):
    """The shards' parameters after one replica ran 7 + 6 steps through ``transport``, and the
    parameters of a plain 13-step training loop from the same start; the replica's chunk
    figures."""
    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    cfg = load(None, [
        f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
        "model.input_size=16", "model.input_lcn_sigma=1.5",
        "model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1}]",
        "update.learning_rate=0.01", "update.momentum_switch_step=2", "train.n_workers=1",
        f'train.push="{push}"', "train.log_interval=1000", *overrides])
    rbm = RBMStack(cfg.model, update=cfg.update,
                   generator=torch.Generator().manual_seed(0)).rbms[0]
    init = {k: v.clone() for k, v in rbm.params.items()}
    layout = ShardLayout.plan({k: v.shape for k, v in init.items()}, 2)
    shards = [ParameterShard(j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names),
                             layout.split(to_numpy(init), j), deltas=shards_add(push))
              for j in range(2)]
    worker = Worker(0, cfg, 0, layout.to_dict(), shards=shards, transport=transport)
    first = worker.run(7, (0, 0), 0, 0)
    second = worker.run(6, first["position"], first["seq_end"], 7)
    params = layout.join([s.fetch()[1] for s in shards])

    local = Worker(0, cfg, 0, layout.to_dict())  # a plain training loop
    for k, v in init.items():
        local.rbm.params[k].copy_(v)
    for step in range(13):
        update, _ = local.compute_step(step)
        local.rbm.apply_update(update)
    for k in init:
        assert not torch.equal(params[k], init[k])
    return params, dict(local.rbm.params), (first, second)


@pytest.mark.parametrize(("push", "n_fetch", "n_push"),
                         [("gradient", 1, 1), ("delta", 5, 3), ("average", 4, 2)])
def test_inprocess_replica_follows_the_single_process_trajectory(tmp_path, push, n_fetch,
                                                                  n_push):
    params, expected, (first, second) = _replica_and_plain_loop(
        tmp_path, push, InProcess(), f"train.n_fetch={n_fetch}", f"train.n_push={n_push}")
    assert first["push_failures"] == second["pushes_rejected"] == 0
    # nobody else pushes: a push is stale only by this replica's own pushes since its fetch
    assert (second["staleness_max"] == 0) == (n_fetch <= n_push)
    for k in expected:
        torch.testing.assert_close(params[k], expected[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_fetch", [1, 5])
def test_a_prefetch_queues_behind_the_pushes_still_on_the_sender_thread(tmp_path, n_fetch):
    """With ``prefetch`` and a delta push, a fetch that overtook a push still being sent would
    answer without that push while the replica's base already holds it: the replica would undo
    its own step. Queued behind the sender, one replica keeps the single-process trajectory."""
    params, expected, _ = _replica_and_plain_loop(
        tmp_path, "delta", LateSender(), "train.prefetch=true", f"train.n_fetch={n_fetch}",
        "train.n_push=1")
    for k in expected:
        torch.testing.assert_close(params[k], expected[k], rtol=0, atol=1e-5)
