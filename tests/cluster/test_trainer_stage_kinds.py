"""The parameter-server path trains the tied and competitive stage kinds: a synchronous run of a
tied k-means stage under a competitive one-of-K RBM stage (pyramid of two sizes) equals the
one-process reference, whitening and initial units included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cluster.corpus_pass import CorpusTops
from cluster.reference import sync_reference
from cluster.trainer import Trainer
from jobs.config import dumps, load
from models.neurons.units import stage_maps
from models.stack import RBMStack
from pipeline.reader import read_frames
from tests.cluster.data import make_dataset

STAGES = ('model.stages=[{kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, '
          'pool_stride=2, pool_kind="rms", sign_split=true, rows_per_frame=8, '
          'learning_rate=0.1}, {kind="competitive", learner="rbm", field=2, n_maps=6, dims=10, '
          'sizes=[16, 12], rows_per_frame=4, learning_rate=0.05}]')


def _config(data, run_dir, *overrides):
    return load(None, [
        f'data.path="{data}"', "data.batch_size=16", "data.holdout_frames=32",
        "model.input_size=16", "model.input_lcn_sigma=0.0", STAGES,
        "update.weight_decay=0.0", "train.mode=\"sync\"", "train.n_workers=2",
        "train.n_ps_shards=2", "train.stages=2", "train.steps=6", "train.checkpoint_every=3",
        "train.prepare_frames=64", f'train.run_dir="{run_dir}"', *overrides])


@dataclass
class WholeRun:
    """The uninterrupted synchronous two-stage run both tests compare with."""

    data: Path
    run_dir: Path
    cfg: object
    corpus_tops: CorpusTops


@pytest.fixture(scope="module")
def whole_run(ray_cluster, tmp_path_factory) -> WholeRun:
    """Train the two-stage run once (with the workers' ranking of the dataset)."""
    root = tmp_path_factory.mktemp("stage_kinds")
    data = make_dataset(root / "data", size=16)
    cfg = _config(data, root / "whole")
    trainer = Trainer(cfg, dumps(cfg), echo=None, top_frames=(5, 8192))
    trainer.train()
    return WholeRun(data, root / "whole", cfg, trainer.corpus_tops)


@pytest.mark.slow
def test_sync_tied_and_competitive_stages_equal_the_reference(whole_run):
    data, cfg = whole_run.data, whole_run.cfg
    trained = RBMStack.load(whole_run.run_dir / "model.pt", device="cpu")
    check_corpus_tops(whole_run.corpus_tops, trained, data)
    reference = sync_reference(cfg, stage=0)
    sync_reference(cfg, stage=1, stack=reference)
    for k in (0, 1):
        for name, p in reference.rbms[k].params.items():
            torch.testing.assert_close(trained.rbms[k].params[name], p, rtol=0, atol=1e-6)
    torch.testing.assert_close(trained.stages[1].white["weight"],
                               reference.stages[1].white["weight"])
    untrained = sync_reference(cfg, stage=0, steps=0)
    sync_reference(cfg, stage=1, steps=0, stack=untrained)
    assert (trained.rbms[1].params["W"] - untrained.rbms[1].params["W"]).abs().max() > 1e-5
    events = (whole_run.run_dir / "events.log").read_text()
    assert "stage 0: fitted its whitening" in events and "stage 1: fitted its whitening" in events


@pytest.mark.slow
def test_a_run_resumed_at_the_stage_boundary_equals_the_uninterrupted_run(whole_run, tmp_path):
    """Stage 0 trained alone (``train.stages=1``), then the run resumed with ``train.stages=2``
    (as after Ctrl-C in stage 1's preparation): stage 1 is prepared in a fresh process, and the
    model equals the uninterrupted two-stage run's. Stage 1's initial units were once drawn from
    the stack's shared generator, which stage 0's preparation had advanced in the uninterrupted
    run only."""
    whole, split = whole_run.run_dir, tmp_path / "split"
    for overrides, resume in ((("train.stages=1",), False), ((), True)):
        cfg = _config(whole_run.data, split, *overrides)
        Trainer(cfg, dumps(cfg), resume=resume, echo=None).train()
    a, b = (torch.load(d / "model.pt", weights_only=False)["state"]["rbms"] for d in (whole, split))
    assert "resume: stages 0..0 already trained" in (split / "events.log").read_text()
    for k in (0, 1):
        for name, p in a[k]["learner"]["params"].items():
            torch.testing.assert_close(b[k]["learner"]["params"][name], p, rtol=0, atol=0)
    torch.testing.assert_close(b[1]["white"]["weight"], a[1]["white"]["weight"], rtol=0, atol=0)


@pytest.mark.slow
def test_a_run_resumed_within_a_prepared_stage_equals_the_uninterrupted_run(whole_run, tmp_path,
                                                                           monkeypatch):
    """Stopped right after stage 0's step-3 checkpoint (as by Ctrl-C or a kill), then resumed:
    stage 0 is not prepared again (its checkpoint holds it), and stage 1's preparation draws
    from the stack's generator where stage 0's preparation left it, as in the uninterrupted
    run. ``model.pt`` once carried only the state before stage 0's preparation, so the resumed
    run drew other initial units for stage 1 (W differed by up to 3.6)."""
    from cluster.drivers.sync import SyncDriver

    checkpoint = SyncDriver._checkpoint

    def stop_after_step_3(driver):
        checkpoint(driver)
        if driver.actors.stage == 0 and driver.step == 3:
            raise KeyboardInterrupt

    whole, split = whole_run.run_dir, tmp_path / "split"
    cfg = _config(whole_run.data, split)
    monkeypatch.setattr(SyncDriver, "_checkpoint", stop_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, dumps(cfg), echo=None).train()
    monkeypatch.setattr(SyncDriver, "_checkpoint", checkpoint)
    Trainer(cfg, dumps(cfg), resume=True, echo=None).train()
    events = (split / "events.log").read_text()
    assert "resuming from" in events and events.count("stage 0: fitted its whitening") == 1
    assert "resume: no stage trained yet" in events  # it said "stages 0..-1 already trained"
    a, b = (torch.load(d / "model.pt", weights_only=False)["state"]["rbms"] for d in (whole, split))
    for k in (0, 1):
        for name, p in a[k]["learner"]["params"].items():
            torch.testing.assert_close(b[k]["learner"]["params"][name], p, rtol=0, atol=0)


def check_corpus_tops(got: CorpusTops, trained: RBMStack, data) -> None:
    """The workers' ranking of the dataset (their own shards from their caches, worker 0 the
    held-out shard too) is the top stage's trained units ranked over every frame of the
    dataset, ids numbering the frames read in order."""
    frames = read_frames(data)
    assert got.stage == 1 and set(got.tops) == {"pooled"} and sum(got.rows) == len(frames)
    maps = dict(stage_maps(trained, torch.from_numpy(frames)))[1]["pooled"].flatten(1).T
    want = torch.topk(maps, 5, dim=1)
    top = got.tops["pooled"]
    torch.testing.assert_close(top.values, want.values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps.gather(1, top.ids), want.values, rtol=1e-5, atol=1e-5)
