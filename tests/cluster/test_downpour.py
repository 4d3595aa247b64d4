"""Downpour pushes with ``n_push > 1`` on a real local Ray cluster: a worker accumulates its
updates, pushes the sum once per period from its sender thread, and every shard applies each
accumulated push exactly once (a replayed chunk is rejected), with the same arithmetic as the
in-process replay of the same steps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cluster.config import TrainConfig
from cluster.sharding import ShardLayout
from cluster.stage import start_stage
from cluster.worker import Worker
from jobs.config import load
from models.rbm.optim import ParameterUpdater
from models.stack import RBMStack
from tests.cluster.data import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), size=16)


def _config(dataset, *overrides):
    return load(None, [
        f'data.path="{dataset}"', "data.batch_size=16", "data.holdout_frames=0",
        "model.input_size=16", "model.input_lcn_sigma=1.5",
        "model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1, "
        "sparsity_target=0.1}]",
        "update.learning_rate=0.01", "update.momentum_switch_step=2",
        "train.n_workers=1", "train.n_ps_shards=2", *overrides])


def _stage(cfg, stage_dir):
    """Stage 0 of a fresh stack, its initial parameters, and the stage's real actors (2 shards
    holding those parameters, ``train.n_workers`` workers) as the trainer starts them."""
    stack = RBMStack(cfg.model, update=cfg.update, generator=torch.Generator().manual_seed(0))
    rbm = stack.rbms[0]
    init = {k: v.clone() for k, v in rbm.params.items()}
    return rbm, init, start_stage(cfg, 0, rbm, stage_dir, worker_cpus=0.1)


def test_the_demo_trains_synchronously_and_the_library_defaults_stay_conservative():
    """The demo trains in the synchronous schedule, chosen on the probe's tuning part because a
    sync run repeats bit for bit (benchmarks/results/TUNING.md, tune_s43_sync_seed*): 600 steps
    of one batch per worker, the 1,200 batches its async setting took. Periods 2-4 and prefetch
    cut the async PS cost (benchmarks/results/ps.json) but diverged or did not learn with summed
    gradient pushes and the demo's momentum (benchmarks/results/ps_quality.json), so the library
    defaults are the conservative ones."""
    demo = load(Path(__file__).parents[2] / "configs/demo.toml", [])
    assert (demo.train.mode, demo.train.steps, demo.train.n_workers) == ("sync", 600, 2)
    default = TrainConfig()
    assert (default.n_push, default.n_fetch) == (1, 1)
    assert (default.prefetch, default.push, default.transfer_dtype) == (False, "gradient",
                                                                       "float32")


def test_accumulated_pushes_are_applied_once_and_exactly(ray_cluster, dataset, tmp_path):
    import ray

    n_steps, n_push = 7, 3  # pushes: steps 0-2, 3-5 and the chunk's remainder 6
    cfg = _config(dataset, "train.n_fetch=1000", f"train.n_push={n_push}",
                  "train.max_in_flight=1", "train.log_interval=1000", "train.prefetch=false")
    rbm, init, actors = _stage(cfg, tmp_path)
    layout, shards, [worker] = actors.layout, actors.shards, actors.workers
    try:
        out = ray.get(worker.run.remote(n_steps, (0, 0), 0, 0))
        assert (out["pushes"], out["seq_end"], out["pushes_rejected"]) == (3, 3, 0)
        infos = ray.get([s.info.remote() for s in shards])
        assert [i["n_applied"] for i in infos] == [3, 3]
        assert all(i["last_seq"] == {0: 2} for i in infos)
        params = layout.join([p for _, p in ray.get([s.fetch.remote() for s in shards])])

        # a replay of the same chunk (a restarted worker) is rejected push by push
        again = ray.get(worker.run.remote(n_steps, (0, 0), 0, 0))
        assert again["pushes_rejected"] == 3 * 2
        assert [i["n_applied"] for i in ray.get([s.info.remote() for s in shards])] == [3, 3]
    finally:
        actors.kill()

    # in-process replay: the same replica computes the same 7 updates against the initial
    # parameters (n_fetch > steps: fetched once), summed in groups of n_push, applied once each
    local = Worker(0, cfg, 0, layout.to_dict())
    for k, v in init.items():
        local.rbm.params[k].copy_(v)
    updater = ParameterUpdater(rbm.update_config, rbm.decay_names)
    expected = {k: v.clone() for k, v in init.items()}
    acc = None
    for step in range(n_steps):
        update, _ = local.compute_step(step)
        if acc is None:
            acc = update
        else:
            for k, u in update.items():
                acc[k].add_(u)
        if (step + 1) % n_push == 0 or step == n_steps - 1:
            updater.step(expected, acc)
            acc = None
    for k in expected:
        torch.testing.assert_close(params[k], expected[k], rtol=0, atol=1e-6)
        assert not torch.equal(params[k], init[k])


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_fetch_sees_the_workers_own_pushes_unless_prefetched(ray_cluster, dataset, prefetch,
                                                               tmp_path):
    """Pushes leave from the sender thread; a (non-prefetched) fetch is the answer of the push
    before it (one call per shard per step), so one worker alone reads its own updates:
    staleness 0. A prefetch travels during the step, before that step's push: at most 2 (the
    push still on the sender thread)."""
    import ray

    cfg = _config(dataset, "train.n_fetch=1", "train.n_push=1", "train.max_in_flight=2",
                  "train.log_interval=1000", f"train.prefetch={str(prefetch).lower()}")
    _, _, actors = _stage(cfg, tmp_path)
    shards, [worker] = actors.shards, actors.workers
    try:
        out = ray.get(worker.run.remote(8, (0, 0), 0, 0))
        assert out["pushes"] == 8 and out["pushes_rejected"] == out["push_failures"] == 0
        assert [i["n_applied"] for i in ray.get([s.info.remote() for s in shards])] == [8, 8]
        infos = ray.get([s.info.remote() for s in shards])
        if prefetch:
            assert 0 < out["staleness_mean"] and out["staleness_max"] <= 2
            assert all(i["n_fetches"] >= 8 and i["n_replies"] == 0 for i in infos)
        else:
            assert out["staleness_max"] == 0
            # every fetch after the first came back with the previous step's push
            assert all((i["n_fetches"], i["n_replies"]) == (1, 8) for i in infos)
        assert {"seconds_fetch", "seconds_input", "seconds_compute", "seconds_push",
                "seconds_wait"} <= set(out)
    finally:
        actors.kill()


@pytest.mark.parametrize(("prefetch", "dtype"), [(False, "float32"), (True, "float32"),
                                                (False, "bfloat16")])
def test_delta_pushes_let_one_worker_follow_the_single_process_trajectory(ray_cluster, dataset,
                                                                          prefetch, dtype,
                                                                          tmp_path):
    """``train.push = "delta"``: the replica applies every update itself (its own momentum) and
    pushes its parameter change; a fetch keeps the changes the shards have not seen. With one
    worker the shards then hold exactly the single-process trajectory, whatever the periods
    (here push every 3, fetch every 5, prefetched or not, over two chunks). bfloat16 transfers
    round each message to 8 bits of mantissa: the same trajectory to that precision."""
    import ray

    cfg = _config(dataset, "train.n_fetch=5", "train.n_push=3", "train.max_in_flight=2",
                  "train.log_interval=1000", f"train.prefetch={str(prefetch).lower()}",
                  'train.push="delta"', f'train.transfer_dtype="{dtype}"')
    _, init, actors = _stage(cfg, tmp_path)
    layout, shards, [worker] = actors.layout, actors.shards, actors.workers
    try:
        first = ray.get(worker.run.remote(7, (0, 0), 0, 0))
        second = ray.get(worker.run.remote(6, first["position"], first["seq_end"], 7))
        assert first["pushes"] == 3 and second["pushes"] == 2  # 3+3+1, then 3+3
        pushes = first["pushes"] + second["pushes"]
        assert [i["n_applied"] for i in ray.get([s.info.remote() for s in shards])] == [pushes] * 2
        params = layout.join([p for _, p in ray.get([s.fetch.remote() for s in shards])])
    finally:
        actors.kill()

    local = Worker(0, cfg, 0, layout.to_dict())  # the same replica in process: a plain loop
    for k, v in init.items():
        local.rbm.params[k].copy_(v)
    for step in range(13):
        update, _ = local.compute_step(step)
        local.rbm.apply_update(update)
    assert local.rbm.updater.current_momentum() == cfg.update.momentum  # switched on the way
    for k in init:
        expected = local.rbm.params[k]
        if dtype == "float32":
            torch.testing.assert_close(params[k], expected, rtol=0, atol=1e-5)
        else:  # bf16: 2^-8 of each pushed change and of the parameters fetched
            err = float((params[k] - expected).abs().max())
            assert err <= 2.0 ** -7 * float(expected.abs().max()), (k, err)
        assert not torch.equal(params[k], init[k])


def test_average_pushes_move_the_shards_by_the_mean_of_the_replicas_steps(ray_cluster,
                                                                          dataset, tmp_path):
    """``train.push = "average"``: a replica's parameter change counts 1/n_workers on the
    shards. Worker 0 runs a period alone from P0 and pushes; worker 1 then fetches
    P0 + d0/2, runs a period from there and pushes: the shards hold P0 + d0/2 + d1/2, with d_k
    the replica's own optimiser steps, replayed here in process."""
    import ray

    cfg = _config(dataset, "train.n_workers=2", "train.n_fetch=4", "train.n_push=4",
                  "train.max_in_flight=2", "train.log_interval=1000", 'train.push="average"')
    _, init, actors = _stage(cfg, tmp_path)
    layout, shards, workers = actors.layout, actors.shards, actors.workers
    try:
        for w in workers:  # one after the other: worker 1 starts from worker 0's push
            assert ray.get(w.run.remote(4, (0, 0), 0, 0))["pushes"] == 1
        params = layout.join([p for _, p in ray.get([s.fetch.remote() for s in shards])])
    finally:
        actors.kill()

    expected = {k: v.clone() for k, v in init.items()}
    for k in range(2):
        local = Worker(k, cfg, 0, layout.to_dict())
        for name, v in expected.items():
            local.rbm.params[name].copy_(v)
        for step in range(4):
            update, _ = local.compute_step(step)
            local.rbm.apply_update(update)
        for name in expected:  # += (end - start) / 2, the start being expected itself
            expected[name] += (local.rbm.params[name] - expected[name]) * 0.5
    for name in init:
        torch.testing.assert_close(params[name], expected[name], rtol=0, atol=1e-5)
        assert not torch.equal(params[name], init[name])


def test_unknown_push_kind_is_refused(dataset):
    cfg = _config(dataset)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, push="deltas"))
    with pytest.raises(ValueError, match="push='deltas'"):
        Worker(0, cfg, 0, ShardLayout.plan({"W": (4, 4)}, 1).to_dict())
