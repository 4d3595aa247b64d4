"""Parameter-server training on a real local Ray cluster (the shared ``ray_cluster`` fixture).

The synchronous tests compare final parameters against :func:`cluster.reference.sync_reference` (one
process, no Ray, no sharding) and against each other: an uninterrupted run, a stopped-and-resumed
run, and runs where a worker or a shard was killed all end with the same parameters.
"""

from __future__ import annotations

import json

import pytest
import ray
import torch

from cluster.failures import Diverged
from cluster.reference import sync_reference
from cluster.runlog import read_metrics
from cluster.state_io import write_state
from cluster.trainer import Trainer
from jobs.config import dumps, load
from models.kernels.arithmetic import describe, fingerprint
from models.stack import RBMStack
from pipeline.reader import read_frames
from tests.cluster.data import make_dataset

STEPS = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # 4 videos x 96 frames of 16x16, 48 rows per shard -> 8 shards (1 held out)
    return make_dataset(tmp_path_factory.mktemp("data"), size=16)


def _config(dataset, run_dir, *overrides):
    return load(None, [
        f'data.path="{dataset}"', "data.batch_size=16", "data.holdout_frames=32",
        "model.input_size=16", "model.input_lcn_sigma=1.5",
        "model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1, "
        "sparsity_target=0.1}, {field=3, stride=1, n_maps=4, pool=2, pool_stride=1}]",
        "update.learning_rate=0.01", "update.momentum_switch_step=5",
        "train.mode=\"sync\"", "train.n_workers=2", "train.n_ps_shards=2", "train.stages=1",
        f"train.steps={STEPS}", "train.checkpoint_every=8", "train.log_interval=4",
        f'train.run_dir="{run_dir}"', *overrides])


def _train(cfg, resume=False):
    return Trainer(cfg, dumps(cfg), resume=resume, echo=None).train()


def _stage_params(run_dir, stage=0):
    blob = torch.load(run_dir / "model.pt", weights_only=False)
    return blob["state"]["rbms"][stage]["params"]


def _assert_same(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def sync_run(ray_cluster, dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("sync")
    cfg = _config(dataset, run, "train.stages=2")  # greedy: stage 1 on stage-0 features
    summary = _train(cfg)
    return cfg, run, summary


def test_sync_equals_single_process(sync_run):
    """Both stages: stage 1 trained on stage-0 features that the workers computed."""
    cfg, run, summary = sync_run
    stack = sync_reference(cfg, stage=0)
    reference = {k: v.clone() for k, v in stack.rbms[0].params.items()}
    params = _stage_params(run)
    _assert_same(params, reference)
    sync_reference(cfg, stage=1, stack=stack)
    _assert_same(_stage_params(run, 1), stack.rbms[1].params)
    assert len(summary["stages"]) == 2
    loaded = RBMStack.load(run / "model.pt", device="cpu")  # the models package reads it back
    _assert_same(loaded.rbms[1].params, stack.rbms[1].params)
    # the model did change (the comparison is not between two untouched initialisations)
    init = sync_reference(cfg, stage=0, steps=0).rbms[0].params
    assert (params["W"] - init["W"]).abs().max() > 1e-4
    assert summary["stages"][0]["updates_applied"] == [STEPS, STEPS]
    records = read_metrics(run)
    assert any("recon_error" in r and "fe_gap" in r for r in records)
    assert (run / "config.toml").read_text() == dumps(cfg)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_resumed_sync_run_equals_uninterrupted(sync_run, dataset, tmp_path):
    cfg, run, _ = sync_run
    first = _config(dataset, tmp_path, "train.steps=8")  # stops right after the step-8 checkpoint
    _train(first)
    path = tmp_path / "checkpoints/stage0/step00000008/meta.pt"
    meta = torch.load(path, weights_only=False)
    assert meta["step"] == 8 and meta["config"] == dumps(first)
    assert meta["positions"][0] != [0, 0]  # the data position is part of the checkpoint
    here = describe(fingerprint())
    assert meta["arithmetic"] == here  # the one arithmetic of all five processes
    # as if another machine had written it: the resume says it need not repeat bit for bit
    write_state(path, {**meta, "arithmetic": "Other CPU, torch 2.13.0 AVX512, numba 0.68.1 x"})
    (tmp_path / "model.pt").unlink()  # as if the process had died before finishing the stage
    _train(_config(dataset, tmp_path), resume=True)
    _assert_same(_stage_params(tmp_path), _stage_params(run))
    events = (tmp_path / "events.log").read_text()
    assert "resuming from" in events
    assert ("stage 0: its checkpoint was written with another arithmetic (Other CPU, torch "
            "2.13.0 AVX512, numba 0.68.1 x): from here the run need not equal an uninterrupted "
            "one bit for bit") in events


@pytest.mark.parametrize("damage, message", [
    ("positions", r"worker \d could not start: ValueError: this worker's data holds \d+ "
                  r"batches an epoch, not the 999"),
    ("shard file", r"parameter-server shard 0 could not start: .*DamagedStateFile: .*shard0.pt "
                   r"is not a whole state file"),
])
def test_an_actor_that_cannot_start_fails_the_run_at_once(ray_cluster, dataset, tmp_path,
                                                         damage, message):
    """A checkpoint whose data positions the dataset cannot reach (another dataset given on
    resume), or whose shard file was cut short: the actor's constructor raises, and Ray never
    starts such an actor (a shard it retries for ever). The run once waited for it for
    placement_timeout_s, reported as 'Ray is starting it', then blamed the resources."""
    import time

    from cluster.failures import StartFailed
    from cluster.state_io import read_state, write_state

    _train(_config(dataset, tmp_path, "train.steps=8"))
    step = tmp_path / "checkpoints/stage0/step00000008"
    if damage == "positions":
        write_state(step / "meta.pt", {**read_state(step / "meta.pt"),
                                       "positions": [[0, 999], [0, 999]]})
    else:
        (step / "shard0.pt").write_bytes((step / "shard0.pt").read_bytes()[:1000])
    (tmp_path / "model.pt").unlink()
    t0 = time.monotonic()
    with pytest.raises(StartFailed, match=message):
        _train(_config(dataset, tmp_path), resume=True)
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_sync_worker_and_shard_kills_recover_to_the_same_result(sync_run, dataset, tmp_path,
                                                                caplog):
    """A worker killed at step 11 and a shard killed at step 13: Ray restarts both, the shard
    restores its checkpoint, every actor rolls back to step 8, and the run equals the clean one
    (no update lost or applied twice)."""
    _, run, _ = sync_run
    cfg = _config(dataset, tmp_path, "sim.kill_worker=1", "sim.kill_worker_at_step=11",
                  "sim.kill_shard=0", "sim.kill_shard_at_step=13")
    summary = _train(cfg)
    _assert_same(_stage_params(tmp_path), _stage_params(run))
    events = (tmp_path / "events.log").read_text()
    assert "killed worker 1" in events and "killed shard 0" in events
    assert "restored from" in events
    assert summary["stages"][0]["rollbacks"] >= 1
    assert summary["stages"][0]["updates_applied"] == [STEPS, STEPS]
    # the steps a rollback dropped hold the actors' errors: Ray logged each as an "Unhandled
    # error" traceback, though the run recovered and said so in its events
    assert not [r for r in caplog.records if "Unhandled error" in r.getMessage()]
    assert "never reached" not in events


def test_each_stage_names_the_arithmetic_of_every_process(sync_run):
    """Every stage's start says which kernels the driver's, each shard's and each worker's
    libraries chose (one machine here: one arithmetic for all five), so that two runs can tell
    whether they should agree bit for bit."""
    _, run, _ = sync_run
    events = (run / "events.log").read_text()
    line = describe(fingerprint())
    for stage in (0, 1):
        assert (f"stage {stage}: arithmetic: {line} (driver, shard 0, shard 1, worker 0, "
                "worker 1)") in events


def test_a_fault_past_the_last_step_is_named_at_the_end(ray_cluster, dataset, tmp_path):
    """``sim.kill_worker_at_step`` at the stage's step count is never reached: the run says
    so in its events instead of ending as though the recovery it was asked to test had run."""
    _train(_config(dataset, tmp_path, "sim.kill_worker=1", f"sim.kill_worker_at_step={STEPS}"))
    events = (tmp_path / "events.log").read_text()
    assert "killed worker" not in events
    assert (f"injected fault never reached: sim.kill_worker_at_step={STEPS} is past every step "
            "this run trained; worker 1 was not killed") in events


class KillWorkerAtSteps:
    """A fault injector that kills worker 1 once at each of ``steps`` (``sim.*`` kills once)."""

    def __init__(self, steps) -> None:
        self.left = set(steps)

    def at_step(self, actors, step: int) -> None:
        if step in self.left:
            self.left.discard(step)
            ray.kill(actors.workers[1], no_restart=False)

    def missed(self) -> list[str]:
        return []


@pytest.mark.slow
def test_a_sync_run_outlives_many_failures_that_each_pass_a_checkpoint(sync_run, dataset,
                                                                       tmp_path, monkeypatch):
    """Worker 1 killed at steps 1..3, each time after a new checkpoint (one every step), with
    the limit of failures in a row at 2: every rollback loses no step, and the run ends with
    the clean run's parameters. The driver once counted every rollback of the stage and, past
    the limit, re-raised Ray's ActorUnavailableError (a traceback), however far the run had
    come between them."""
    _, run, _ = sync_run
    monkeypatch.setattr("cluster.drivers.sync.MAX_ROLLBACKS", 2)  # 3 kills pass it, not 11
    monkeypatch.setattr("cluster.trainer.fault_injector",
                        lambda sim, log: KillWorkerAtSteps(range(1, 4)))
    summary = _train(_config(dataset, tmp_path, "train.checkpoint_every=1"))
    assert summary["stages"][0]["rollbacks"] == 3
    _assert_same(_stage_params(tmp_path), _stage_params(run))


def test_actor_failures_without_progress_end_the_run_in_one_line(ray_cluster, dataset, tmp_path,
                                                                 monkeypatch):
    """Actors that fail at every attempt of the same steps (10 rollbacks to the same
    checkpoint, then an 11th failure) end the run with one line naming the stage, the step and
    the checkpoint (:class:`cluster.failures.TrainingFailed`), not with Ray's error."""
    from cluster.drivers.sync import SyncDriver
    from cluster.failures import TrainingFailed

    def always_lost(driver):
        raise ray.exceptions.RayActorError()

    monkeypatch.setattr(SyncDriver, "_steps", always_lost)
    monkeypatch.setattr(SyncDriver, "_rollback", lambda driver: None)
    with pytest.raises(TrainingFailed, match=r"^stage 0 step 0: 11 actor failures in a row "
                                             r"before the run passed its checkpoint at step 0"):
        _train(_config(dataset, tmp_path))


def test_a_compiled_graph_trains_the_same_parameters_as_tasks(sync_run, dataset, tmp_path):
    """``train.sync_transport = "compiled"``: the same steps as one Ray Compiled Graph (2 workers,
    2 shards: each worker's update split in two parts), both stages bit for bit."""
    _, run, _ = sync_run
    summary = _train(_config(dataset, tmp_path, "train.stages=2",
                             'train.sync_transport="compiled"'))
    for stage in (0, 1):
        _assert_same(_stage_params(tmp_path, stage), _stage_params(run, stage), atol=0)
    assert summary["stages"][0]["updates_applied"] == [STEPS, STEPS]
    assert [r["recon_error"] for r in read_metrics(tmp_path) if "recon_error" in r] == \
        [r["recon_error"] for r in read_metrics(run) if "recon_error" in r]
    events = (tmp_path / "events.log").read_text()
    assert events.count("synchronous steps through one compiled graph") == 2  # a stage each


@pytest.mark.slow
def test_a_compiled_graph_recovers_from_kills_to_the_same_result(sync_run, dataset, tmp_path):
    """As the kill test above, through the compiled graph: the dead actor's graph is torn down,
    every actor rolled back, a new graph compiled, and the run equals the clean one."""
    _, run, _ = sync_run
    cfg = _config(dataset, tmp_path, 'train.sync_transport="compiled"', "sim.kill_worker=1",
                  "sim.kill_worker_at_step=11", "sim.kill_shard=0", "sim.kill_shard_at_step=13")
    summary = _train(cfg)
    _assert_same(_stage_params(tmp_path), _stage_params(run))
    events = (tmp_path / "events.log").read_text()
    assert "restored from" in events
    rollbacks = summary["stages"][0]["rollbacks"]
    assert rollbacks >= 1  # the nodes checked again and a graph compiled at every restart:
    assert events.count("synchronous steps through one compiled graph") == 1 + rollbacks


def test_async_lowers_recon_error_and_survives_faults(ray_cluster, dataset, tmp_path):
    """Downpour with 3 workers (one slow): a worker killed at step 30 is replaced, a shard killed
    at step 50 is restored from its checkpoint, the run completes, recon error falls, the
    free-energy gap stays bounded, staleness is reported, and no push is applied twice."""
    steps = 160
    cfg = _config(dataset, tmp_path, "train.mode=\"async\"", "train.n_workers=3",
                  f"train.steps={steps}", "train.checkpoint_every=20", "train.log_interval=5",
                  "train.warm_start_steps=10", "update.learning_rate=0.008",
                  "sim.slow_worker=2", "sim.slow_worker_delay_s=0.05",
                  "sim.kill_worker=1", "sim.kill_worker_at_step=30",
                  "sim.kill_shard=0", "sim.kill_shard_at_step=50")
    summary = _train(cfg)
    stats = summary["stages"][0]
    assert stats["steps"] == steps
    # reconstruction error on the same frames: initial parameters vs the trained model
    frames = torch.from_numpy(read_frames(dataset, limit=64))
    before = RBMStack(cfg.model, update=cfg.update, device="cpu",
                      generator=torch.Generator().manual_seed(cfg.train.seed))
    after = RBMStack.load(tmp_path / "model.pt", device="cpu")
    r0, r1 = (float(s.rbms[0].reconstruction_error(s.stage_input(frames, 0)))
              for s in (before, after))
    assert r1 < 0.9 * r0, (r0, r1)
    records = [r for r in read_metrics(tmp_path) if "recon_error" in r]
    w0 = [r["recon_error"] for r in records if r["worker"] == 0]  # same worker, same shards
    assert w0[-1] < w0[0], w0
    gaps = [abs(r["fe_gap"]) for r in records if "fe_gap" in r]
    assert gaps and max(gaps) < 1e3 and all(g == g for g in gaps)  # finite, bounded
    assert all("staleness_mean" in r and "frames_per_s" in r for r in records)
    assert max(r["staleness_max"] for r in records) >= 1  # other workers' pushes in between
    events = (tmp_path / "events.log").read_text()
    assert "killed worker 1" in events and "worker 1 died" in events
    assert "killed shard 0" in events and "restored from" in events
    # no double application: a shard applies at most one push per (worker, seq), and seqs run
    # 0..seq_end-1 for each worker, so n_applied <= sum of seq_end (replays were rejected).
    seq_end = {}
    for r in read_metrics(tmp_path):
        if "seq_end" in r:
            seq_end[r["worker"]] = max(seq_end.get(r["worker"], 0), r["seq_end"])
    assert sum(stats["updates_applied"]) <= len(stats["updates_applied"]) * sum(seq_end.values())
    assert stats["updates_applied"][1] <= sum(seq_end.values())  # shard 1 was never rolled back


def _strict(constant):
    raise ValueError(f"{constant} is not plain JSON")


def test_metrics_jsonl_is_plain_json(sync_run):
    """Every record parses as strict JSON (no NaN/Infinity) and every logged step is there: per
    stage, one record per worker and one of the whole stage every ``train.log_interval`` (4)
    steps (``step`` = steps done, t + 1, in the worker records too), with the figures the curves
    are drawn from."""
    _, run, _ = sync_run
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=_strict) for line in lines]
    logged = list(range(1, STEPS + 1, 4))  # the stage record's step: steps done, t + 1
    for stage in (0, 1):
        mine = [r for r in records if r["stage"] == stage]
        whole = [r for r in mine if "worker" not in r]
        assert [r["step"] for r in whole] == logged
        assert all(r["updates_applied"] == r["step"] for r in whole)
        for worker in (0, 1):  # a worker's record carries the same step as the stage's
            assert [r["step"] for r in mine if r.get("worker") == worker] == logged
        for r in mine:
            assert isinstance(r["step"], int) and isinstance(r["time"], float)
            assert {"recon_error", "fe_gap"} <= r.keys()
            assert 0.0 < r["recon_error"] < 2.0


def test_a_diverging_sync_run_fails_with_one_line(ray_cluster, dataset, tmp_path, monkeypatch):
    """The synchronous schedule: a shard sees NaN parameters (its check runs every 50 applied
    updates) and the trainer turns Ray's error into Diverged, one line naming the stage, the
    step and the setting. The command's own line, in the asynchronous schedule (the error
    nested in a worker's task): tests/cluster/test_diverged.py."""
    monkeypatch.delenv("RAY_IGNORE_UNHANDLED_ERRORS", raising=False)  # the trainer sets it
    cfg = _config(dataset, tmp_path, "update.learning_rate=1e30", "train.steps=60",
                  "train.checkpoint_every=0", "train.log_interval=30")
    with pytest.raises(Diverged) as caught:
        _train(cfg)
    line = str(caught.value)
    assert "\n" not in line and line.startswith("stage 0 diverged at step "), line
    assert "lower update.learning_rate (now 1e+30, try 1e+29)" in line
    assert line in (tmp_path / "events.log").read_text()


def test_the_top_stages_ranking_of_the_frames_never_costs_the_run(ray_cluster, dataset,
                                                                    tmp_path, monkeypatch):
    """The workers rank the dataset's frames for the top stage's units before they stop; when
    that optional pass fails (here: the dataset's manifest unreadable by then), the run still
    writes its trained model and says in one event line that the jobs will scan instead."""
    import cluster.trainer

    def unreadable(*args, **kwargs):
        raise OSError("manifest gone")

    one_stage = ("model.stages=[{field=6, stride=2, n_maps=4, pool=2, pool_stride=1}]",
                 "train.steps=4")  # stage 0 is the top stage: one set of actors per run
    cfg = _config(dataset, tmp_path, *one_stage)
    trainer = Trainer(cfg, dumps(cfg), echo=None, top_frames=(3, 10_000))
    trainer.train()
    assert trainer.corpus_tops is not None and trainer.corpus_tops.stage == 0
    monkeypatch.setattr(cluster.trainer, "score_corpus", unreadable)
    cfg = _config(dataset, tmp_path / "again", *one_stage)
    trainer = Trainer(cfg, dumps(cfg), echo=None, top_frames=(3, 10_000))
    trainer.train()
    assert trainer.corpus_tops is None and (tmp_path / "again" / "model.pt").is_file()
    events = (tmp_path / "again" / "events.log").read_text()
    assert "could not rank the dataset's frames (OSError: manifest gone)" in events


def test_async_prefetch_overlaps_fetches(ray_cluster, dataset, tmp_path):
    """With prefetch the next fetch is requested before the step computes: the run completes,
    every push is applied once, and staleness is at least one step (the worker's own push)."""
    cfg = _config(dataset, tmp_path, "train.mode=\"async\"", "train.prefetch=true",
                  "train.steps=40", "train.log_interval=10", "update.momentum=0.5")
    stats = _train(cfg)["stages"][0]
    assert stats["steps"] == 40 and stats["updates_applied"] == [40, 40]
    records = [r for r in read_metrics(tmp_path) if "staleness_mean" in r]
    assert min(r["staleness_mean"] for r in records[1:]) >= 1.0


def test_every_async_checkpoint_holds_every_workers_state(ray_cluster, dataset, tmp_path):
    """Worker 1 runs slower, so its chunks end between the checkpoints at other moments than
    worker 0's: still each checkpoint pairs every worker's data position with that worker's
    own state (its sparsity estimate here), never a missing one. (A worker that has finished
    no chunk yet, as at the stage's first checkpoint at step 0, has no state and no steps: the
    slow worker can be there at step 32 on a loaded machine.)"""
    cfg = _config(dataset, tmp_path, 'train.mode="async"', "train.steps=96",
                  "train.log_interval=2", "train.checkpoint_every=32",
                  "train.keep_checkpoints=0", "sim.slow_worker=1",
                  "sim.slow_worker_delay_s=0.05")
    _train(cfg)
    metas = sorted((tmp_path / "checkpoints/stage0").glob("step*/meta.pt"))[1:]  # past step 0
    assert len(metas) >= 3
    whole = 0
    for path in metas:
        meta = torch.load(path, weights_only=False)
        states, steps = meta["local_states"], meta["worker_steps"]
        assert len(states) == 2, path.parent.name
        for state, n in zip(states, steps, strict=True):
            assert (state is not None and state["q"] is not None) or n == 0, path.parent.name
        whole += all(s is not None for s in states)
    assert whole >= 1  # the slow worker's state is in the later checkpoints


def test_resumed_async_delta_run_equals_uninterrupted(ray_cluster, dataset, tmp_path):
    """Delta pushes keep the optimiser in the worker, so its state (momentum velocity and step
    count, sparsity estimate) goes into the checkpoint with the data position: one worker
    stopped after the step-8 checkpoint and resumed follows the uninterrupted run."""
    common = ('train.mode="async"', "train.n_workers=1", 'train.push="delta"',
              "train.n_push=2", "train.n_fetch=2", "train.log_interval=4",
              "train.checkpoint_every=8")
    _train(_config(dataset, tmp_path / "full", *common))
    _train(_config(dataset, tmp_path / "part", *common, "train.steps=8"))
    meta = torch.load(tmp_path / "part/checkpoints/stage0/step00000008/meta.pt",
                      weights_only=False)
    state = meta["local_states"][0]
    assert state["updater"]["step_count"] == 8 and state["q"] is not None
    (tmp_path / "part/model.pt").unlink()
    _train(_config(dataset, tmp_path / "part", *common), resume=True)
    _assert_same(_stage_params(tmp_path / "part"), _stage_params(tmp_path / "full"), atol=1e-5)
    # a clean resume starts every shard from the checkpoint: logged as a resume, not a fault
    events = (tmp_path / "part/events.log").read_text()
    assert "resuming from" in events
    assert "fault" not in events and "restored from" not in events


def test_async_periods_given_per_stage(ray_cluster, dataset, tmp_path):
    """``n_push = [4, 1]``: stage 0's workers push every 4 steps, stage 1's every step, so the
    shards apply a quarter as many of stage 0's pushes."""
    cfg = _config(dataset, tmp_path, "train.mode=\"async\"", "train.stages=2",
                  "train.n_push=[4, 1]", "train.n_fetch=[4, 1]", "update.momentum=0.5")
    stages = _train(cfg)["stages"]
    assert [s["steps"] for s in stages] == [STEPS, STEPS]
    assert stages[0]["updates_applied"] == [STEPS // 4, STEPS // 4]
    assert stages[1]["updates_applied"] == [STEPS, STEPS]
