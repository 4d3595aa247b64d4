"""cluster.checkpoint: a checkpoint counts once LATEST names it, LATEST names nothing outside its
stage, ``meta.pt`` round-trips, and the step-0 checkpoint of a fresh stage restores every
shard's slices (:func:`cluster.stage.write_initial`)."""

from __future__ import annotations

import pytest
import torch

from cluster.checkpoint import latest_checkpoint, read_meta, step_folder, write_meta
from cluster.ps import ParameterShard
from cluster.sharding import ShardLayout
from cluster.stage import write_initial
from models.rbm.dense import BernoulliRBM
from tests.cluster.data import SHAPES, random_tensors


def _meta(folder: str, step: int, layout: ShardLayout) -> dict:
    return write_meta(folder, stage=1, step=step, config_text="[train]\nseed = 3\n",
                      layout=layout, positions=[(0, 4), (2, 1)], seqs=[5, 7],
                      worker_steps=[4, 6], local_states=[{"q": torch.ones(3)}, None])


def test_step_folders_sort_by_step(tmp_path):
    names = [step_folder(str(tmp_path), s).rsplit("/", 1)[1] for s in (9, 10, 120)]
    assert names == ["step00000009", "step00000010", "step00000120"] == sorted(names)


def test_meta_round_trips_and_publishes_latest(tmp_path):
    layout = ShardLayout.plan(SHAPES, 2)
    assert latest_checkpoint(tmp_path) is None  # no LATEST: a fresh stage
    folder = step_folder(str(tmp_path), 40)
    (tmp_path / "step00000040").mkdir()
    written = _meta(folder, 40, layout)
    assert (tmp_path / "LATEST").read_text() == "step00000040"
    assert latest_checkpoint(tmp_path) == folder
    meta = read_meta(folder)
    assert meta["step"] == 40 and meta["stage"] == 1 and meta["config"] == written["config"]
    assert ShardLayout.from_dict(meta["layout"]).to_dict() == layout.to_dict()
    assert meta["positions"] == [[0, 4], [2, 1]] and meta["seqs"] == [5, 7]
    assert meta["worker_steps"] == [4, 6] and meta["local_states"][1] is None
    assert torch.equal(meta["local_states"][0]["q"], torch.ones(3))


def test_latest_naming_an_empty_folder_is_no_checkpoint(tmp_path):
    (tmp_path / "step00000008").mkdir()
    (tmp_path / "LATEST").write_text("step00000008\n")
    assert latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize("name", ["../stage0/step00000008", "/etc", "step8/..", "model.pt"])
def test_latest_names_only_a_step_folder_of_its_stage(tmp_path, name):
    (tmp_path / "LATEST").write_text(name)
    with pytest.raises(ValueError, match="not a checkpoint folder of this stage"):
        latest_checkpoint(tmp_path)


def test_the_initial_checkpoint_restores_every_shard(tmp_path):
    """A fresh stage's step 0: every shard restarted from the stage folder holds its slices of
    the RBM's initial parameters; every worker starts at the beginning of its data."""
    rbm = BernoulliRBM(6, 5, device="cpu", generator=torch.Generator().manual_seed(1))
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 2)
    meta = write_initial(str(tmp_path), 0, rbm, layout, n_workers=3, config_text="",
                         shards_add=False)
    assert latest_checkpoint(tmp_path) == step_folder(str(tmp_path), 0)
    assert meta["step"] == 0 and meta["positions"] == [[0, 0]] * 3 and meta["seqs"] == [0] * 3
    for j in range(2):
        shard = ParameterShard(j, layout.to_dict(), rbm.update_config, tuple(rbm.decay_names),
                               None, str(tmp_path))
        assert shard.restored_from == step_folder(str(tmp_path), 0)
        expected = layout.split(rbm.params, j)
        assert shard.params.keys() == expected.keys()
        for k in expected:
            assert torch.equal(shard.params[k], expected[k])


def test_writing_the_first_checkpoint_leaves_the_drivers_thread_count_alone(tmp_path):
    """The driver writes a stage's first checkpoint through in-process shards, then fits the
    next stage on all its threads: a shard's constructor must not pin the process to one."""
    rbm = BernoulliRBM(6, 5, device="cpu", generator=torch.Generator().manual_seed(1))
    layout = ShardLayout.plan({k: v.shape for k, v in rbm.params.items()}, 2)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        write_initial(str(tmp_path), 0, rbm, layout, n_workers=2, config_text="",
                      shards_add=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_a_later_checkpoint_is_the_one_a_shard_restores(tmp_path):
    layout = ShardLayout.plan(SHAPES, 1)
    first, later = random_tensors(0), random_tensors(1)
    for step, params in ((0, first), (8, later)):
        folder = step_folder(str(tmp_path), step)
        (tmp_path / folder.rsplit("/", 1)[1]).mkdir()
        ParameterShard(0, layout.to_dict(), BernoulliRBM(2, 2, device="cpu").update_config,
                       ("W",), {k: v.numpy() for k, v in params.items()}).save(
            f"{folder}/shard0.pt")
        _meta(folder, step, layout)
    shard = ParameterShard(0, layout.to_dict(), BernoulliRBM(2, 2, device="cpu").update_config,
                           ("W",), None, str(tmp_path))
    assert shard.restored_from.endswith("step00000008")
    assert all(torch.equal(shard.params[k], later[k]) for k in SHAPES)


@pytest.mark.parametrize("change", [
    {"layout": None}, {"step": "six hundred"}, {"step": -1}, {"positions": [[0]]},
    {"positions": "0,4"}, {"stage": True}, "a list instead"], ids=str)
def test_a_meta_with_wrong_fields_is_a_checkpoint_error(tmp_path, change):
    """A ``meta.pt`` is read from a file: a field missing, of another type or out of range is
    one line (CheckpointError), not a KeyError or TypeError deep in the trainer."""
    from cluster.checkpoint import CheckpointError
    from cluster.state_io import write_state

    folder = step_folder(str(tmp_path), 8)
    (tmp_path / "step00000008").mkdir()
    meta = _meta(folder, 8, ShardLayout.plan(SHAPES, 2))
    if isinstance(change, dict):
        meta = {k: v for k, v in {**meta, **change}.items() if v is not None}
    else:
        meta = [change]
    write_state(f"{folder}/meta.pt", meta)
    with pytest.raises(CheckpointError, match="meta.pt"):
        read_meta(folder)


def test_a_checkpoint_the_store_refuses_ends_the_run_in_one_line(ray_cluster, tmp_path):
    """A shard's save that fails (the store stopped answering) reached the user as two chained
    tracebacks (the shard's RayTaskError(OSError), then the log's upload)."""
    import ray

    from cluster.drivers.context import StageCheckpointer
    from cluster.failures import CheckpointUnwritable
    from cluster.stage import StageActors

    @ray.remote(num_cpus=0)
    class Refusing:
        def save(self, path):
            raise OSError(f"When uploading {path}: the store stopped answering")

    (tmp_path / "file").write_text("not a folder")
    for stage_dir, cause in ((tmp_path / "ck", "the store stopped answering"),
                             (tmp_path / "file" / "ck", "")):
        actors = StageActors(stage=1, stage_dir=str(stage_dir), layout=None,
                             shards=[Refusing.remote()], workers=[], shard_pids=[])
        with pytest.raises(CheckpointUnwritable) as info:
            StageCheckpointer(actors, "", log=None).save(3, positions=[], seqs=[], wsteps=[])
        line = str(info.value)
        assert line.startswith("stage 1 step 3: the checkpoint ") and "\n" not in line
        assert cause in line and line.endswith("continue the run with --resume")


def test_prune_keeps_the_newest_and_the_latest(tmp_path):
    """Checkpoints were never deleted: 3,361 step folders after a long run."""
    from cluster.checkpoint import prune

    for step in (0, 5, 10, 15, 20):
        (tmp_path / f"step{step:08d}").mkdir()
        (tmp_path / f"step{step:08d}" / "shard0.pt").write_bytes(b"x")
    (tmp_path / "LATEST").write_text("step00000015")  # 20 not yet published
    assert prune(tmp_path, 0) == []
    assert prune(tmp_path, 2) == ["step00000000", "step00000005", "step00000010"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step00000015",
                                                          "step00000020"]
    (tmp_path / "LATEST").write_text("step00000015")
    assert prune(tmp_path, 1) == []  # the newest folder goes only once LATEST moved on


def test_prune_never_deletes_the_folder_the_workers_started_from(tmp_path):
    """A worker Ray restarts reads its start checkpoint again: pruning it failed the run
    (FileNotFoundError for step00000000/meta.pt) when a node died mid-training."""
    from cluster.checkpoint import prune

    for step in (0, 200, 400, 600):
        (tmp_path / f"step{step:08d}").mkdir()
    (tmp_path / "LATEST").write_text("step00000600")
    assert prune(tmp_path, 2, protect=str(tmp_path / "step00000000")) == ["step00000200"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST", "step00000000", "step00000400", "step00000600"]


def test_old_checkpoints_that_cannot_be_deleted_leave_the_new_one_and_the_run_going(
        ray_cluster, tmp_path, monkeypatch):
    """Pruning ran inside the checkpoint's own error handling: an old folder that could not be
    deleted ended the run as "the checkpoint could not be written", though it had been."""
    import ray

    from cluster.drivers.context import StageCheckpointer
    from cluster.runlog import RunLogger
    from cluster.stage import StageActors
    from pipeline import storage

    @ray.remote(num_cpus=0)
    class Saving:
        def save(self, path):
            torch.save({}, path)

    def refuse(location):
        raise PermissionError(f"[Errno 13] Permission denied: '{location}'")

    stage_dir = tmp_path / "stage1"
    for step in (0, 5):
        (stage_dir / f"step{step:08d}").mkdir(parents=True)
    monkeypatch.setattr(storage, "delete_tree", refuse)
    actors = StageActors(stage=1, stage_dir=str(stage_dir), layout=ShardLayout.plan(SHAPES, 1),
                         shards=[Saving.remote()], workers=[], shard_pids=[])
    log = RunLogger(tmp_path / "run", echo=None, tensorboard=False)
    meta = StageCheckpointer(actors, "", log=log, keep=1).save(
        10, positions=[(0, 1)], seqs=[1], wsteps=[1])
    log.close()
    assert meta["step"] == 10 and latest_checkpoint(str(stage_dir)).endswith("step00000010")
    events = (tmp_path / "run" / "events.log").read_text()
    assert "could not be deleted" in events and "Permission denied" in events
    assert sorted(p.name for p in stage_dir.iterdir()) == [
        "LATEST", "step00000000", "step00000005", "step00000010"]
