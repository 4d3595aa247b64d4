"""The plan (cluster/plan.py): sizes checked against a real stack, the paper's scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cluster.plan import plan, stage_plans
from jobs.config import load
from models.stack import RBMStack

ROOT = Path(__file__).resolve().parents[2]


LOCAL = ["model.stages=[{field=10, stride=2, n_maps=8, pool=3, pool_stride=2}, "
         "{field=13, n_maps=16, pool=1}]"]
TIED_RBM = ['model.stages=[{kind="tied", field=7, n_maps=8, pool=3, pool_stride=2}, '
            '{kind="competitive", learner="kmeans", field=8, n_maps=32, dims=20, '
            'sizes=[58, 40]}]']


@pytest.mark.parametrize("overrides", [[], LOCAL, TIED_RBM], ids=["demo", "local", "tied_rbm"])
def test_parameter_counts_equal_a_real_stack(overrides):
    cfg = load(ROOT / "configs/demo.toml", overrides)
    stack = RBMStack(cfg.model, device="cpu", generator=torch.Generator().manual_seed(0))
    for sp, rbm in zip(stage_plans(cfg.model, 2), stack.rbms, strict=True):
        assert sp.n_params == sum(p.numel() for p in rbm.params.values())
        assert sp.n_maps == rbm.params["W"].shape[-2 if rbm.params["W"].dim() == 3 else 0]


def test_a_competitive_stage_pays_for_the_tied_stage_below_at_every_size():
    cfg = load(ROOT / "configs/demo.toml", ["model.stages[1].sizes=[58, 48, 40]"])
    one = load(ROOT / "configs/demo.toml", ["model.stages[1].sizes=[58]"])
    s1, s1_one = stage_plans(cfg.model, 1)[1], stage_plans(one.model, 1)[1]
    # the tied stage (32 filters of 7x7 on 1 channel) at 58, 48 and 40 px, against 58 alone
    conv = {s: 2 * (s - 6) ** 2 * 32 * 49 for s in (58, 48, 40)}
    assert s1.flops_per_frame - s1_one.flops_per_frame == pytest.approx(conv[48] + conv[40])


def test_a_replica_holds_its_stage_input_cache_up_to_its_budget():
    from models.read_cache import bytes_per_frame

    cfg = load(ROOT / "configs/demo.toml", ["train.read_cache_mb=100"])
    stack = RBMStack(cfg.model, device="cpu", generator=torch.Generator().manual_seed(0))
    dims = cfg.model.stages[1].dims  # whitened values at every 8 x 8 window of
    per = bytes_per_frame(stack.config, 1)  # maps of 32, 25, 20 and 16 px
    assert per == 4 * dims * (25**2 + 18**2 + 13**2 + 9**2)
    small = plan(cfg, nodes=3, frames=200, gflops_per_core=10.0)["stages"]
    large = plan(cfg, nodes=3, frames=200_000, gflops_per_core=10.0)["stages"]
    assert small[0]["read_cache_bytes"] == large[0]["read_cache_bytes"] == 0
    assert small[1]["read_cache_bytes"] == 100 * per  # 2 workers, 100 frames each
    assert large[1]["read_cache_bytes"] == 100 * 2**20
    assert (large[1]["replica_memory_bytes"] - small[1]["replica_memory_bytes"]
            == 100 * 2**20 - 100 * per)
    mirror = load(ROOT / "configs/demo.toml", ["train.read_cache_mb=300", "data.mirror=true"])
    both_ways = plan(mirror, nodes=3, frames=200, gflops_per_core=10.0)["stages"]
    assert both_ways[1]["read_cache_bytes"] == 200 * per  # each frame in both orientations


def test_paper_geometry_is_about_a_billion_parameters_on_1000_nodes():
    cfg = load(ROOT / "configs/le2012.toml")
    p = plan(cfg, nodes=1000, gflops_per_core=10.0)
    assert 0.9e9 < p["total_params"] < 1.5e9
    assert p["n_workers"] + p["n_ps_shards"] == 1000
    s0 = p["stages"][0]
    # stage 0: 183x183 positions, 8 maps, 18*18*3 inputs; CD-1 = 5 passes x 2 FLOPs per weight
    assert s0["n_params"] == 183 * 183 * 8 * 972 + 183 * 183 * 8 + 3 * 200 * 200
    assert s0["flops_per_step_per_worker"] == pytest.approx(100 * 10 * 183 * 183 * 8 * 972)
    assert s0["bytes_per_step_per_worker"] == 2 * 4 * s0["n_params"]
    # at 10 GFLOP/s per core the shards' network is the bound: 744 replicas push and fetch
    # 2 x 1 GB per step through 256 shards' 10 Gbit/s links
    assert s0["bound"] == "parameter-server network"
    assert s0["step_s"] == pytest.approx(744 * 8 * s0["n_params"] / (256 * 1.25e9))
    # slower cores: compute-bound, and doubling the per-core speed halves the step
    slow = plan(cfg, nodes=1000, gflops_per_core=1.0)["stages"][0]
    fast = plan(cfg, nodes=1000, gflops_per_core=2.0)["stages"][0]
    assert slow["bound"] == fast["bound"] == "worker"
    assert fast["step_s"] == pytest.approx(slow["step_s"] / 2)


def test_bfloat16_transfers_halve_the_bytes_per_step():
    f32 = plan(load(ROOT / "configs/le2012.toml"), nodes=1000, gflops_per_core=10.0)
    bf16 = plan(load(ROOT / "configs/le2012.toml", ['train.transfer_dtype="bfloat16"']),
                nodes=1000, gflops_per_core=10.0)
    assert bf16["transfer_dtype"] == "bfloat16"
    for a, b in zip(f32["stages"], bf16["stages"], strict=True):
        assert b["bytes_per_step_per_worker"] * 2 == a["bytes_per_step_per_worker"]
        assert b["ps_network_s_per_step"] < a["ps_network_s_per_step"]


def test_periods_given_per_stage_size_each_stage_by_its_own():
    every = plan(load(ROOT / "configs/demo.toml", ['train.mode="async"', "train.n_push=1",
                                                   "train.n_fetch=1"]),
                 nodes=3, gflops_per_core=10.0, call_s=1e-3)
    staged = plan(load(ROOT / "configs/demo.toml", ['train.mode="async"', "train.n_push=[4, 1]",
                                                    "train.n_fetch=[4, 1]"]),
                  nodes=3, gflops_per_core=10.0, call_s=1e-3)
    assert staged["n_push"] == [4, 1] and staged["stages"][0]["n_push"] == 4
    (a0, a1), (b0, b1) = every["stages"], staged["stages"]
    assert b0["bytes_per_step_per_worker"] * 4 == a0["bytes_per_step_per_worker"]
    assert b0["shard_calls_s_per_step"] == pytest.approx(a0["shard_calls_s_per_step"] / 4)
    assert b1 == a1


def test_gflops_per_core_is_measured_on_one_thread(monkeypatch):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread on this machine: nothing to tell apart")
    from cluster import plan_rates as plan_module
    from models.rbm.local import LocalRBM

    seen = []
    real = LocalRBM.compute_update

    def spy(self, *args, **kwargs):
        seen.append((torch.get_num_threads(), numba.get_num_threads()))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalRBM, "compute_update", spy)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    before = (torch.get_num_threads(), numba.get_num_threads())
    assert plan_module.measure_gflops_per_core(seconds=0.05) > 0
    assert seen and set(seen) == {(1, 1)}
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    out = plan(load(ROOT / "configs/demo.toml"), nodes=2, gflops_per_core=None)
    assert "1 torch thread and 1 numba thread" in out["gflops_per_core_source"]


def test_a_cached_stage_pays_its_encoding_once_a_frame_and_the_learner_each_step():
    """The demo's competitive stage: with its frames' encodings cached a step costs the one-of-K
    RBM on the sampled rows; the stage-0 maps and the whitening of every window come once a
    frame, in the first epoch; with the cache off every read pays the stage below and whitens
    its sampled windows; past the budget, the frames left out pay their encoding each time."""
    cfg = load(ROOT / "configs/demo.toml")
    st = cfg.model.stages[1]
    sp = stage_plans(cfg.model, 1)[1]
    # 4 products of the rows with W: up at the data and at the sample, the two phases' sums
    # (the down pass gathers the sampled states' rows); what torch counts in a real CD-1 step
    assert sp.cached_flops_per_frame == st.rows_per_frame * 2 * 4 * st.n_maps * st.dims
    from torch.utils.flop_counter import FlopCounterMode

    from models.rbm.softmax import SoftmaxRBM

    rbm = SoftmaxRBM(st.dims, st.n_maps, device="cpu")
    with FlopCounterMode(display=False) as counter:
        rbm.compute_update(torch.randn(st.rows_per_frame, st.dims))
    assert counter.get_total_flops() == sp.cached_flops_per_frame
    windows = 25**2 + 18**2 + 13**2 + 9**2  # 8 x 8 windows of the 64 maps at each level
    below = sum(2 * (s - 6) ** 2 * 32 * 49 for s in st.sizes)
    assert sp.encode_flops_per_frame == below + windows * 2 * 64 * 64 * st.dims
    assert sp.flops_per_frame == (sp.cached_flops_per_frame + below
                                  + st.rows_per_frame * 2 * 64 * 64 * st.dims)
    batch = cfg.data.batch_size

    def stage1(overrides, frames=2000):
        return plan(load(ROOT / "configs/demo.toml", overrides), nodes=3, frames=frames,
                    gflops_per_core=10.0)["stages"][1]

    cached, off = stage1([]), stage1(["train.read_cache_mb=0"])
    assert cached["flops_per_step_per_worker"] == batch * sp.cached_flops_per_frame
    assert off["flops_per_step_per_worker"] == batch * sp.flops_per_frame
    assert cached["first_epoch_s"] - cached["epoch_s"] == pytest.approx(
        1000 * sp.encode_flops_per_frame / (10e9 * 16))  # 1000 frames a worker, 16 cores
    half = stage1([f"train.read_cache_mb={500 * bytes_per_frame_mb(cfg)}"])
    assert half["read_cache_hit_share"] == pytest.approx(0.5)
    assert half["flops_per_step_per_worker"] == pytest.approx(
        batch * (sp.cached_flops_per_frame + 0.5 * sp.encode_flops_per_frame))


def bytes_per_frame_mb(cfg) -> float:
    from models.read_cache import bytes_per_frame

    return bytes_per_frame(cfg.model, 1) / 2**20


def test_a_shard_keeps_optimiser_state_only_when_it_applies_the_updates():
    cfg = load(ROOT / "configs/demo.toml", ['train.mode="async"', 'train.push="average"'])
    n = plan(cfg, nodes=3, gflops_per_core=10.0)["stages"][1]["n_params"]
    assert plan(cfg, nodes=3, gflops_per_core=10.0)["stages"][1]["shard_memory_bytes"] == 4 * n
    grad = load(ROOT / "configs/demo.toml", ['train.mode="async"', 'train.push="gradient"'])
    assert plan(grad, nodes=3, gflops_per_core=10.0)["stages"][1]["shard_memory_bytes"] == 8 * n
    sync = load(ROOT / "configs/demo.toml", ['train.mode="sync"', 'train.push="average"'])
    assert plan(sync, nodes=3, gflops_per_core=10.0)["stages"][1]["shard_memory_bytes"] == 8 * n


@pytest.mark.parametrize("n_push, n_fetch, calls", [(1, 1, 1.0), (2, 1, 1.0), (4, 4, 0.25),
                                                   (2, 3, 1 / 2 + 1 / 3 - 1 / 6)])
def test_a_worker_pays_each_shard_call_once_a_push_and_a_fetch_coincide(n_push, n_fetch, calls):
    from cluster.plan import shard_calls_per_step

    cfg = load(ROOT / "configs/demo.toml", ['train.mode="async"', f"train.n_push={n_push}",
                                            f"train.n_fetch={n_fetch}", "train.n_ps_shards=2"])
    assert shard_calls_per_step(cfg.train, 2) == pytest.approx(2 * calls)
    free = plan(cfg, nodes=4, cores_per_node=1, gflops_per_core=10.0)["stages"][0]
    paid = plan(cfg, nodes=4, cores_per_node=1, gflops_per_core=10.0, call_s=1e-3)["stages"][0]
    assert paid["shard_calls_s_per_step"] == pytest.approx(2 * calls * 1e-3)
    assert paid["step_s"] == pytest.approx(free["step_s"] + 2 * calls * 1e-3)
    assert paid["bound"] == "worker"
    with pytest.raises(ValueError, match="call_s"):
        plan(cfg, nodes=4, gflops_per_core=10.0, call_s=-1.0)


def test_a_measured_stage_step_replaces_its_flops_over_the_rate(tmp_path):
    """A stage's step measured on one core (input included) sizes that stage; the others keep
    FLOPs / rate. The measurement is a real single-process loop on a real dataset."""
    from cluster.plan_rates import measure_stage_steps
    from tests.cluster.data import make_dataset

    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    cfg = load(None, [f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=0",
                      "model.input_size=16", "model.input_lcn_sigma=0.0",
                      'model.stages=[{kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, '
                      'pool_stride=2, pool_kind="rms", sign_split=true, rows_per_frame=8}, '
                      '{kind="competitive", learner="rbm", field=2, n_maps=6, dims=10, '
                      'sizes=[16, 12], rows_per_frame=4}]', "train.prepare_frames=64"])
    threads = torch.get_num_threads()
    steps = measure_stage_steps(cfg, steps=3, warmup=1)
    assert torch.get_num_threads() == threads
    assert sorted(steps) == [0, 1] and all(0 < s < 5 for s in steps.values())
    by_rate = plan(cfg, nodes=3, cores_per_node=1, gflops_per_core=10.0)["stages"]
    measured = plan(cfg, nodes=3, cores_per_node=2, gflops_per_core=10.0,
                    stage_steps_s={0: steps[0]})["stages"]
    assert measured[0]["compute_s_per_step"] == pytest.approx(steps[0] / 2)
    assert measured[0]["compute_source"].startswith("measured")
    assert measured[1]["compute_s_per_step"] == pytest.approx(
        by_rate[1]["compute_s_per_step"] / 2)
    assert measured[1]["compute_source"] == "FLOPs / per-core rate"


def test_the_single_process_loop_counts_an_epoch_of_its_training_shards(tmp_path):
    """The plan's step measurement warms up over an epoch (the frames decoded once, then kept):
    the epoch is the training shards' frames in whole batches."""
    from cluster.reference import SingleProcessLoop
    from tests.cluster.data import make_dataset

    data = make_dataset(tmp_path / "data", size=16, n_videos=2, frames_per_video=48)
    for batch in (16, 20):  # 96 frames: 6 batches; 4 of 20, the partial one dropped
        cfg = load(None, [f'data.path="{data}"', f"data.batch_size={batch}",
                          "data.holdout_frames=0", "model.input_size=16",
                          "model.input_lcn_sigma=0.0",
                          'model.stages=[{kind="tied", learner="kmeans", field=3, n_maps=4, '
                          'pool=2, pool_stride=2, pool_kind="rms", sign_split=true, '
                          'rows_per_frame=8}]', "train.prepare_frames=64"])
        assert SingleProcessLoop(cfg, 0).epoch_steps() == 2 * 48 // batch


def test_a_sync_worker_sends_its_update_and_receives_the_parameters_every_step_in_float32():
    """Sync mode ignores the Downpour periods and the transfer type: every step one float32
    update goes up and the float32 parameters come back (``Worker.compute``, ``apply_sync``)."""
    overrides = ["train.n_push=[4, 2]", "train.n_fetch=[4, 2]", 'train.transfer_dtype="bfloat16"']
    sync = plan(load(ROOT / "configs/demo.toml", ['train.mode="sync"', *overrides]), nodes=3,
                gflops_per_core=10.0)
    every = plan(load(ROOT / "configs/demo.toml", ['train.mode="async"', "train.n_push=1",
                                                   "train.n_fetch=1",
                                                   'train.transfer_dtype="float32"']),
                 nodes=3, gflops_per_core=10.0)
    staged = plan(load(ROOT / "configs/demo.toml", ['train.mode="async"', *overrides]), nodes=3,
                  gflops_per_core=10.0)
    for s, e, a in zip(sync["stages"], every["stages"], staged["stages"], strict=True):
        assert (s["bytes_per_step_per_worker"] == e["bytes_per_step_per_worker"]
                == 8 * s["n_params"])
        assert a["bytes_per_step_per_worker"] < s["bytes_per_step_per_worker"]
    assert (sync["n_push"], sync["n_fetch"], sync["transfer_dtype"]) == (1, 1, "float32")


def test_a_sync_step_waits_for_the_workers_call_and_each_shards_apply():
    from cluster.plan import shard_calls_per_step

    cfg = load(ROOT / "configs/demo.toml", ['train.mode="sync"', "train.n_ps_shards=2"])
    assert shard_calls_per_step(cfg.train, 2) == 3.0
    free = plan(cfg, nodes=4, cores_per_node=1, gflops_per_core=10.0)["stages"][0]
    paid = plan(cfg, nodes=4, cores_per_node=1, gflops_per_core=10.0, call_s=1e-3)["stages"][0]
    assert paid["step_s"] == pytest.approx(free["step_s"] + 3e-3)


def test_a_sync_step_waits_longer_for_each_worker_beyond_the_first_and_async_does_not():
    """One driver calls each worker and each shard reads each update in turn: with ``fanout_s``
    a sync step on W workers is ``(W - 1) fanout_s`` longer than the same step on one, and an
    async worker's step does not depend on W."""
    sync = load(ROOT / "configs/demo.toml", ['train.mode="sync"'])
    async_ = load(ROOT / "configs/demo.toml", ['train.mode="async"'])

    def step(cfg, nodes, fanout_s):
        return plan(cfg, nodes=nodes, cores_per_node=1, gflops_per_core=10.0, call_s=1e-3,
                    fanout_s=fanout_s)["stages"][1]

    for nodes in (2, 3, 11):  # 1, 2 and 10 workers beside one shard
        base, paid = step(sync, nodes, 0.0), step(sync, nodes, 5e-4)
        assert paid["sync_fanout_s_per_step"] == pytest.approx((nodes - 2) * 5e-4)
        assert paid["step_s"] == pytest.approx(base["step_s"] + (nodes - 2) * 5e-4)
        assert step(async_, nodes, 5e-4)["step_s"] == step(async_, nodes, 0.0)["step_s"]
    with pytest.raises(ValueError, match="fanout_s=-1"):
        plan(sync, nodes=3, gflops_per_core=10.0, fanout_s=-1)


def test_a_replica_grows_with_its_batch_is_flagged_past_its_node_and_an_epoch_is_each_frame_once():
    """Three figures no other case moves: a replica's memory grows by the same activations for
    each batch's worth of frames (dropping the batch factor left it flat); a replica larger than
    its node's memory is flagged (``replica_fits_node`` stuck at True passed); and mirroring,
    which flips a frame in place with probability 1/2, leaves an epoch at each frame once (it
    doubles the cached inputs, not the frames: an epoch over the doubled count passed)."""
    def stage1(extra, **kw):
        cfg = load(ROOT / "configs/demo.toml", ["train.read_cache_mb=0", *extra])
        return plan(cfg, nodes=3, frames=10_000, gflops_per_core=10.0, **kw)["stages"][1]

    r = [stage1([f"data.batch_size={b}"])["replica_memory_bytes"] for b in (16, 32, 48)]
    assert r[2] - r[1] == r[1] - r[0] > 0
    assert stage1([])["replica_fits_node"]
    tight = stage1([], node_memory_gb=stage1([])["replica_memory_bytes"] / 2e9)
    assert not tight["replica_fits_node"]
    plain, mirrored = stage1([]), stage1(["data.mirror=true"])
    assert mirrored["step_s"] == plain["step_s"]  # no cache: the same step either way
    assert mirrored["epoch_s"] == plain["epoch_s"] == 10_000 / plain["frames_per_s"]
