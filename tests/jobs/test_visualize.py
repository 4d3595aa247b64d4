"""``catneuron visualize`` end to end on a tiny trained run: the JSON contract, every PNG
present and decodable, plain relative paths, clean re-runs, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import matplotlib.image as mpimg
import pytest
import torch

from cluster.state_io import read_trained_stack
from jobs.config import load
from jobs.train import main as train_main
from jobs.unit_scan import layer_outputs
from jobs.visualize import main
from pipeline.reader import read_frames
from tests.cluster.data import make_dataset

STAGES = "[{field=6, stride=2, n_maps=2, pool=2}, {field=2, stride=1, n_maps=2, pool=2}]"


@pytest.fixture(scope="module")
def tiny_run(ray_cluster, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("vis")
    data = make_dataset(tmp / "data", n_videos=2, frames_per_video=48, size=16, shard_rows=16)
    run = tmp / "run"
    assert train_main([f'--data.path="{data}"', "--data.batch_size=16",
                       "--data.holdout_frames=16", "--model.input_size=16",
                       f"--model.stages={STAGES}", "--train.stages=2", "--workers", "2",
                       "--ps-shards", "1", "--mode", "sync", "--steps", "3",
                       "--run-dir", str(run), "--quiet"]) == 0
    return run


def pngs(doc) -> list[str]:
    """Every value of a ``*png`` key, anywhere in a JSON document."""
    if isinstance(doc, dict):
        return [v for k, v in doc.items() if k.endswith("png") and isinstance(v, str)] + [
            p for v in doc.values() for p in pngs(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in pngs(v)]
    return []


def check_paths(folder: Path, doc) -> int:
    for p in pngs(doc):
        path = PurePosixPath(p)
        assert not path.is_absolute() and ".." not in path.parts and "\\" not in p, p
        img = mpimg.imread(folder / p)
        assert img.ndim == 3 and min(img.shape[:2]) > 0, p
    return len(pngs(doc))


def check_distinct_first(frames: list[dict], gap: int) -> None:
    """Frames of one video at least ``gap`` apart come first, each part best first, and every
    frame after them is a near copy of one of them (jobs/report/distinct_frames.py)."""
    shown = [(t["source"], t["frame_index"]) for t in frames]
    near = [any(s == s2 and abs(i - i2) < gap for s2, i2 in shown[:j])
            for j, (s, i) in enumerate(shown)]
    k = near.index(True) if True in near else len(near)
    assert all(near[k:]), shown
    acts = [t["activation"] for t in frames]
    assert acts[:k] == sorted(acts[:k], reverse=True) and acts[k:] == sorted(acts[k:], reverse=True)


ARGS = ["--top-k", "3", "--units", "1", "--selective", "2", "--invariance", "1", "--steps", "3",
        "--quiet"]
DETAIL = ("weights_png", "top_frames", "optimal_stimulus")


@pytest.mark.slow
def test_visualize_writes_the_contract(tiny_run, capsys):
    assert main(["--run", str(tiny_run), *ARGS]) == 0
    out = tiny_run / "visualize"
    index = json.loads((out / "index.json").read_text())
    assert index["schema"] == 1 and [s["stage"] for s in index["stages"]] == [0, 1]
    assert index["top_frames_min_gap"] == 30 and index["top_frames_pool"] == 30
    assert {c["title"] for c in index["curves"]} >= {"reconstruction error", "free-energy gap"}
    n = check_paths(out, index)
    stage0 = json.loads((out / "stage0.json").read_text())
    assert stage0["layer"] == "pooled" and stage0["shape"] == [2, 5, 5]
    assert [u["index"] for u in stage0["units"]] == list(range(50))  # all of stage 0
    stage1 = json.loads((out / "stage1.json").read_text())
    assert stage1["shape"] == [2, 3, 3] and len(stage1["units"]) == 3  # 2 selective + 1 drawn
    for doc in (stage0, stage1):
        n += check_paths(out, doc)
        for u in doc["units"]:
            m, rest = divmod(u["index"], 9 if doc["stage"] else 25)
            assert (u["map"], *divmod(rest, 3 if doc["stage"] else 5)) == (
                m, u["y"], u["x"])
            assert u["selectivity"] is None and len(u["box"]) == 4
            if not u["detailed"]:  # listed only: position and selectivity, no pictures
                assert all(u[k] is None for k in (*DETAIL, "invariance")), u
                continue
            assert len(u["top_frames"]) == 3
            check_distinct_first(u["top_frames"], index["top_frames_min_gap"])
            assert all(t["box"] == u["box"] and t["source"].startswith("video")
                       for t in u["top_frames"])
            assert u["optimal_stimulus"]["n_starts"] == 2
            assert u["invariance"] is None or u["selective"]
        detailed = [u for u in doc["units"] if u["detailed"]]
        assert len(detailed) == 3  # 2 selective + 1 drawn
        assert sum(u["selective"] for u in detailed) == 2
        assert sum(u["invariance"] is not None for u in doc["units"]) == 1
    # curves; per stage: mosaic, 5 per detailed unit (weights, 3 top frames, stimulus), and
    # 1 invariance
    assert n == len(index["curves"]) + 2 * (1 + 3 * 5 + 1)
    assert len(list(out.rglob("*.png"))) == n
    assert str(out / "index.json") in capsys.readouterr().out


@pytest.mark.slow
def test_rerun_overwrites_and_reads_the_evaluation(tiny_run):
    out = tiny_run / "visualize"
    stale = out / "stage1" / "unit99_top7.png"  # an earlier run's picture: replaced
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"old")
    ranking = [{"index": 17, "heldout_balanced_accuracy": 0.9, "heldout_auc": 0.92,
                "heldout_balanced_accuracy_std": 0.02, "auc": 0.95, "polarity": 1}]
    hidden = [{"index": 3, "heldout_balanced_accuracy": 0.8, "polarity": 1}]
    verdict = {"face_unit": False, "text": "no face unit: ...",
               "best": {"stage": 1, "layer": "hidden", "index": 5}}
    (tiny_run / "evaluation.json").write_text(json.dumps(
        {"schema": 1, "verdict": verdict,
         "stages": [{"stage": 1, "layer": "pooled", "ranking": ranking},
                    {"stage": 1, "layer": "hidden", "ranking": hidden,
                     "best": {"index": 3}}]}))
    try:
        assert main(["--run", str(tiny_run), *ARGS]) == 0
    finally:
        (tiny_run / "evaluation.json").unlink()
    assert not stale.exists() and not (tiny_run / "visualize.partial").exists()
    doc = json.loads((out / "stage1.json").read_text())
    units = {(u["layer"], u["index"]): u for u in doc["units"]}
    assert units[("pooled", 17)]["selective"] and units[("pooled", 17)]["invariance"]
    assert units[("pooled", 17)]["selectivity"] == {
        "heldout_balanced_accuracy": 0.9, "heldout_balanced_accuracy_std": 0.02,
        "heldout_auc": 0.92}  # the unit's own held-out figure, never the whole-probe AUC
    # the headline unit is hidden: it gets every picture, as the hidden layer's best does
    assert doc["shapes"] == {"pooled": [2, 3, 3], "hidden": [2, 4, 4]}
    assert {i for layer, i in units if layer == "hidden"} == {3, 5}
    head = units[("hidden", 5)]
    assert head["detailed"] and head["invariance"] is not None and len(head["top_frames"]) == 3
    assert head["weights_png"] == "stage1/hidden5_weights.png"
    check_paths(out, doc)
    # its top frame is the frame of the whole dataset where P(h = 1 | v) of that unit peaks
    stack, _ = read_trained_stack(tiny_run / "model.pt")
    frames = read_frames(load(tiny_run / "config.toml").data.path)
    best = layer_outputs(stack, torch.from_numpy(frames), [(1, "hidden")])[(1, "hidden")][:, 5]
    assert head["top_frames"][0]["activation"] == pytest.approx(float(best.max()), abs=1e-5)


def test_one_line_errors(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nope")]) == 2
    assert main(["--run", str(tmp_path)]) == 2
    assert main(["--run", "s3://bucket/runs/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "not found" in err[0] and "model.pt" in err[1]
    assert "local one" in err[2]


@pytest.mark.parametrize("flag, value", [("--top-k", 0), ("--min-gap", -1), ("--units", -1),
                                         ("--selective", -1), ("--invariance", -1),
                                         ("--starts", 0), ("--steps", -1), ("--actors", -1),
                                         ("--sample-frames", 0), ("--seed", -1)])
def test_a_count_below_its_least_is_one_line_naming_the_flag(tmp_path, capsys, flag, value):
    assert main(["--run", str(tmp_path), flag, str(value)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag} {value}: must be >=" in err[0]


@pytest.mark.parametrize("seed", [2**32, 2**64])
def test_a_seed_too_large_for_a_generator_is_one_line(tmp_path, capsys, seed):
    """``seed + stage`` seeds a torch generator (64 bits at most): a larger seed is refused
    before the model is read, not by a traceback after the scan."""
    assert main(["--run", str(tmp_path), "--seed", str(seed)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--seed {seed}: must be from 0 to 2**32 - 1" in err[0]


def test_no_unit_to_show_is_one_line_before_anything_is_written(tmp_path, capsys):
    """``--selective 0 --units 0`` with no evaluation.json naming a unit: the top-k scan had
    no unit to rank and stopped the job with a ValueError traceback (RunningTopK of 0 units),
    leaving visualize.partial behind."""
    from cluster.state_io import write_state
    from jobs.config import dumps
    from models.stack import RBMStack

    data = make_dataset(tmp_path / "data", n_videos=1, frames_per_video=8, size=16,
                        shard_rows=8)
    run = tmp_path / "run"
    run.mkdir()
    config = load(None, [f'--data.path="{data}"', "--model.input_size=16",
                         "--model.stages=[{field=6, stride=2, n_maps=2, pool=2}]",
                         "--train.stages=1", f'--train.run_dir="{run}"'])
    (run / "config.toml").write_text(dumps(config))
    stack = RBMStack(config.model, generator=torch.Generator().manual_seed(0), device="cpu")
    write_state(run / "model.pt", {"config": stack.config.to_dict(), "state": stack.state_dict(),
                                   "stages_trained": 1})
    before = sorted(p.name for p in run.iterdir())
    assert main(["--run", str(run), "--selective", "0", "--units", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--selective 0 --units 0: no unit of stage 0 to show" in err[0]
    assert sorted(p.name for p in run.iterdir()) == before


def test_each_count_at_its_least_is_accepted(tmp_path, capsys):
    least = ["--top-k", "1", "--min-gap", "0", "--units", "0", "--selective", "0",
             "--invariance", "0", "--starts", "1", "--steps", "0", "--actors", "0",
             "--sample-frames", "1", "--seed", "0"]
    assert main(["--run", str(tmp_path), *least]) == 2  # on to the run folder: no model.pt
    assert "model.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_top_frames_from_evaluates_pass_equal_those_of_a_scan(tiny_run):
    """With ``RUN/corpus_tops.json`` (what evaluate writes) visualize takes the top stage's top
    frames from it and scans only stage 0; the pictures' frames are the ones a scan finds."""
    from cluster.topk import shard_row_counts
    from jobs.report import corpus_tops
    from pipeline.reader import list_shards

    stack, _ = read_trained_stack(tiny_run / "model.pt")
    data = load(tiny_run / "config.toml").data.path
    shards = list_shards(data)
    tops = corpus_tops.corpus_tops(stack, read_frames(data), 1, 32)
    (tiny_run / corpus_tops.FILE).write_text(
        corpus_tops.to_json(1, tops, shards, shard_row_counts(shards),
                            corpus_tops.model_digest(tiny_run / "model.pt")))
    out = tiny_run / "visualize"

    def top_frames() -> dict:
        units = json.loads((out / "stage1.json").read_text())["units"]
        return {(u["layer"], u["index"]): [(t["source"], t["frame_index"], t["activation"])
                                           for t in u["top_frames"] or []] for u in units}

    try:
        assert main(["--run", str(tiny_run), *ARGS]) == 0
    finally:
        (tiny_run / corpus_tops.FILE).unlink()
    index = json.loads((out / "index.json").read_text())
    assert index["top_frames_from_evaluate"] == [[1, "pooled"]]
    from_file = top_frames()
    assert main(["--run", str(tiny_run), *ARGS]) == 0
    assert json.loads((out / "index.json").read_text())["top_frames_from_evaluate"] == []
    scanned = top_frames()
    assert from_file.keys() == scanned.keys() and any(from_file.values())
    for key, frames in scanned.items():
        assert [f[:2] for f in from_file[key]] == [f[:2] for f in frames], key
        assert [f[2] for f in from_file[key]] == pytest.approx([f[2] for f in frames], abs=1e-5)


def test_a_file_someone_put_in_visualize_is_refused_and_kept(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    (run / "visualize" / "stage0").mkdir(parents=True)
    (run / "model.pt").write_bytes(b"not read: refused before")
    data.mkdir()
    (data / "_manifest.json").write_text("{}")
    (run / "visualize" / "index.json").write_text("{}")  # its own files are replaced
    (run / "visualize" / "stage0" / "unit3_top0.png").write_bytes(b"png")
    notes = run / "visualize" / "notes.md"
    notes.write_text("mine")
    assert main(["--run", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(notes) in err and "visualize" in err
    assert notes.read_text() == "mine"
