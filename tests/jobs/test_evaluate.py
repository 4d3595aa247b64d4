"""``catneuron evaluate``: the contract's JSON, folder probes, one-line errors, end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from jobs.config import dumps, load
from jobs.evaluate import main
from models.kernels.arithmetic import fingerprint
from models.stack import RBMStack
from pipeline.reader import read_frames
from tests.cluster.data import make_dataset

SCORE = {"accuracy", "balanced_accuracy", "auc", "heldout_accuracy",
         "heldout_balanced_accuracy", "heldout_balanced_accuracy_std", "heldout_auc", "polarity"}
STAGES = "[{field=6, stride=2, n_maps=4, pool=2}, {field=2, stride=1, n_maps=3, pool=1}]"


KINDS = ('[{kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, pool_stride=2, '
         'sign_split=true}, {kind="competitive", field=2, n_maps=6, dims=10, sizes=[16, 12]}]')


def _run_folder(tmp_path: Path, stages: str = STAGES, trained: int = 2) -> Path:
    """A run folder as the trainer writes it (untrained weights, data-fitted parts fitted: the
    layout is what matters)."""
    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=32, size=16,
                        shard_rows=32)
    cfg = load(None, [f'data.path="{data}"', "train.seed=3", "model.input_size=16",
                      f"model.stages={stages}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps(cfg))
    stack = RBMStack(cfg.model, update=cfg.update, device="cpu",
                     generator=torch.Generator().manual_seed(99))
    for k in range(stack.n_layers):
        if stack.stages[k].needs_data:
            stack.prepare(k, torch.from_numpy(read_frames(data, limit=64)))
    torch.save({"config": stack.config.to_dict(), "state": stack.state_dict(),
                "stages_trained": trained}, run / "model.pt")
    return run


BUILTIN = {"faces": 100, "non_faces": 100, "backgrounds": 100}  # the reporting part
BASELINES = {"always_negative", "best_pixel", "image_statistics", "random_weights",
             "linear_filters", "exemplar_filters", "stage0"}


LOCAL_LAYERS = ("pooled", "hidden", "pooled_lcn")


def check_contract(result: dict, classes: dict[str, int], n_stages: int,
                   layers: tuple[tuple[str, ...], ...] = (LOCAL_LAYERS, LOCAL_LAYERS),
                   competitive_top: bool = False) -> None:
    assert result["schema"] == 1
    assert result["probe"]["classes"] == classes
    confound = result["probe"]["confound_balanced_accuracy"]
    assert 0 <= confound <= 1 and result["probe"]["confound_warning"] == (confound > 0.6)
    best = result["best_neuron"]
    assert SCORE <= set(best) and best["polarity"] in (1, -1)
    assert best["stage"] == n_stages - 1 and best["layer"] in ("pooled", "hidden")
    stab = best["stability"]
    assert len(stab["per_split"]) == result["protocol"]["n_splits"]
    assert abs(sum(stab["share"].values()) - 1) < 1e-3
    assert stab["top_share"] == max(stab["share"].values())
    assert f"{best['layer']}/{best['index']}" in stab["share"]
    spread = {"spread_exemplar_filters"} if competitive_top else set()
    assert set(result["baselines"]) == BASELINES | spread
    for s in result["baselines"].values():
        assert SCORE <= set(s)
    assert result["baselines"]["always_negative"]["heldout_balanced_accuracy"] == 0.5
    keys = {(e["stage"], e["layer"]) for e in result["stages"]}
    assert keys == {(k, la) for k in range(n_stages) for la in layers[k]}
    for e in result["stages"]:
        assert 0 < len(e["ranking"]) <= 50 and SCORE <= set(e["best"])
        assert e["normalised"] == (e["layer"] == "pooled_lcn")
        ba = [r["heldout_balanced_accuracy"] for r in e["ranking"]]
        assert ba == sorted(ba, reverse=True)
        key = f"{e['stage']}/{e['layer']}/{e['ranking'][0]['index']}"
        counts = result["histograms"]["units"][key]
        assert {c: sum(v) for c, v in counts.items()} == classes
    assert set(result["per_class"]) == set(classes)
    assert {"pixels", "stage0", f"stage{n_stages - 1}"} <= set(result["linear_readout"])
    v = result["verdict"]
    assert v["probe_confound"] == confound and v["text"].endswith(".")
    assert v["best"] == {"stage": best["stage"], "layer": best["layer"],
                         "index": best["index"], "polarity": best["polarity"],
                         "balanced_accuracy": best["heldout_balanced_accuracy"],
                         "std": best["heldout_balanced_accuracy_std"],
                         "auc": best["heldout_auc"]}
    assert (v["winner"] is None) == v["face_unit"]


def check_builtin(result: dict) -> None:
    """What only the built-in probe has: twins as negatives, boxes, the reference."""
    assert result["probe"]["negatives"] == ["non_faces"] and result["probe"]["part"] == "report"
    best = result["best_neuron"]
    assert set(best["by_size"]) == {"small", "medium", "large"}
    assert set(best["by_quadrant"]) == {"top_left", "top_right", "bottom_left", "bottom_right"}
    assert sum(b["n_images"] for b in best["by_size"].values()) == 200
    assert SCORE <= set(result["reference"]["mean_face_template"])


def test_builtin_probe_writes_the_contract(tmp_path, capsys):
    run = _run_folder(tmp_path)
    assert main(["--run", str(run), "--filters", "50", "--splits", "3", "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    check_contract(result, BUILTIN, 2)
    check_builtin(result)
    assert result["probe"]["source"] == "builtin" and result["probe"]["positive"] == "faces"
    assert result["arithmetic"] == fingerprint()  # what another machine must share to repeat it
    # the test dataset's videos have no corpus record: no corpus share
    assert result["best_neuron"]["corpus_top100_face_share"] is None
    out = capsys.readouterr().out
    assert "top stage best unit" in out and "linear_filters" in out
    assert result["verdict"]["text"] in out
    assert main(["--run", str(run), "--filters", "50", "--splits", "3", "--quiet",
                 "--part", "tune"]) == 0
    tuned = json.loads((run / "evaluation.json").read_text())
    assert tuned["probe"]["part"] == "tune" and tuned["probe"]["classes"] == BUILTIN


def test_choose_on_tune_chooses_on_the_tuning_part_and_scores_the_reporting_part(tmp_path,
                                                                                 capsys):
    """One fixed split of the whole built-in probe: the headline is the top-stage unit, polarity
    and threshold chosen on the tuning part's images, measured on the reporting part's, with
    the bootstrap spread over its identities."""
    from jobs.evaluate import load_probe, load_run
    from jobs.report.evaluation import headline, top_set, unit_tables
    from models.neurons.selectivity import fixed_split, heldout_scores

    run = _run_folder(tmp_path, KINDS)
    assert main(["--run", str(run), "--filters", "50", "--choose-on", "tune", "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["protocol"] == {"n_splits": 1, "n_thresholds": 20, "seed": 0,
                                  "choose_on": "tune"}
    assert result["probe"]["part"] == "all"
    check_contract(result, {k: 2 * n for k, n in BUILTIN.items()}, 2,
                   (("pooled",), ("pooled",)), competitive_top=True)
    cfg, stack = load_run(run)
    probe = load_probe(argparse.Namespace(probe=None), cfg)
    keep, y, _ = headline(probe, "faces")
    values = top_set(unit_tables(stack, probe.images, stages=(1,)), 1)[0][keep]
    held = heldout_scores(values, y, splits=fixed_split(probe.parts[keep] == "tune"),
                          groups=probe.groups[keep])
    best = result["best_neuron"]
    assert best["index"] == int(held.chosen[0])
    assert best["heldout_balanced_accuracy"] == round(held.best_balanced_accuracy, 4)
    assert best["heldout_balanced_accuracy_std"] == round(held.best_balanced_accuracy_std, 4) > 0
    assert sum(b["n_images"] for b in best["by_size"].values()) == 400  # both parts binned
    capsys.readouterr()
    assert main(["--run", str(run), "--choose-on", "tune", "--part", "report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--part" in err


def test_tied_and_competitive_stages_are_scored(tmp_path, capsys):
    run = _run_folder(tmp_path, KINDS)
    assert main(["--run", str(run), "--filters", "50", "--splits", "3", "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    check_contract(result, BUILTIN, 2, (("pooled",), ("pooled",)),  # tied, then competitive
                   competitive_top=True)
    assert result["best_neuron"]["layer"] == "pooled"
    assert result["best_neuron"]["index"] < 6  # one of the 6 competing units
    assert result["baselines"]["stage0"] == next(e["best"] for e in result["stages"]
                                                 if e["stage"] == 0)
    check_corpus_tops(run)
    check_exemplar_draws(run, result)


def check_exemplar_draws(run: Path, result: dict) -> None:
    """The exemplar networks of ``result`` (default draws) are 5 draws whose figures are the
    means of theirs, the first of them the network ``--baseline-draws 1`` scores alone."""
    from jobs.report.evaluation import EXEMPLAR_DRAWS

    for name in ("exemplar_filters", "spread_exemplar_filters"):
        d = result["baselines"][name]["draws"]
        assert d["n"] == EXEMPLAR_DRAWS == len(d["heldout_balanced_accuracy"])
        assert result["baselines"][name]["heldout_balanced_accuracy"] == pytest.approx(
            np.mean(d["heldout_balanced_accuracy"]), abs=1e-4)
        assert d["std"] == pytest.approx(np.std(d["heldout_balanced_accuracy"], ddof=1),
                                         abs=1e-4)
    assert main(["--run", str(run), "--filters", "50", "--splits", "3", "--quiet",
                 "--baseline-draws", "1"]) == 0
    one = json.loads((run / "evaluation.json").read_text())
    for name in ("exemplar_filters", "spread_exemplar_filters"):
        assert "draws" not in one["baselines"][name]
        first = result["baselines"][name]["draws"]
        assert one["baselines"][name]["heldout_balanced_accuracy"] == first[
            "heldout_balanced_accuracy"][0]
        assert one["baselines"][name]["index"] == first["index"][0]
    same = ("random_weights", "linear_filters", "best_pixel", "image_statistics", "stage0")
    assert {k: one["baselines"][k] for k in same} == {k: result["baselines"][k] for k in same}


def test_the_random_weights_baseline_is_several_draws_and_leaves_the_others_as_drawn(tmp_path):
    """``random_weights`` holds the top units of RANDOM_DRAWS random stacks; its first draw and
    the exemplar stacks are the ones a single draw gives (the other draws come last)."""
    from cluster.state_io import read_trained_stack
    from jobs.gallery.figures import BASELINES as LABELS
    from jobs.report import evaluation
    from models.neurons.baselines import reweighted_stack

    run = _run_folder(tmp_path, KINDS)
    stack, _ = read_trained_stack(run / "model.pt")
    frames = read_frames(load(run / "config.toml").data.path)
    images = frames[:12]
    tables = evaluation.unit_tables(stack, images)
    got, more = evaluation.baseline_tables(stack, images, frames, 20, 5, tables, draws=3)
    n_units = 6
    assert got["random_weights"].shape == (12, evaluation.RANDOM_DRAWS * n_units)
    one, none = evaluation.baseline_tables(stack, images, frames, 20, 5, tables)
    assert none == {} and one.keys() == got.keys()
    for name, v in one.items():  # the further exemplar draws come after all of these
        np.testing.assert_array_equal(v, got[name])
    assert more.keys() == {"exemplar_filters", "spread_exemplar_filters"}
    for name, vs in more.items():
        assert len(vs) == 2 and all(v.shape == got[name].shape for v in vs)
        assert not np.array_equal(vs[0], got[name]) and not np.array_equal(vs[0], vs[1])
    g = torch.Generator().manual_seed(5)
    first = evaluation.unit_tables(reweighted_stack(stack, torch.from_numpy(frames), "random", g),
                                   images, layers=("pooled",), stages=(1,))["1/pooled"]
    np.testing.assert_array_equal(got["random_weights"][:, :n_units], first)
    assert not np.array_equal(got["random_weights"][:, n_units:2 * n_units], first)
    assert f"best of {evaluation.RANDOM_DRAWS} draws" in LABELS["random_weights"]


@pytest.mark.parametrize("stages", [KINDS, STAGES])
def test_top_stage_tables_read_the_probe_once_and_equal_a_whole_pass(tmp_path, stages):
    """The baselines' top units come from what the top stage reads, the spread exemplars'
    from the exemplar stack's whitened windows: bit for bit the columns of a whole up-pass
    (``unit_tables``) of each stack."""
    from cluster.state_io import read_trained_stack
    from jobs.report import evaluation
    from models.neurons.baselines import reweighted_stack, spread_exemplar_stack

    run = _run_folder(tmp_path, stages)
    stack, _ = read_trained_stack(run / "model.pt")
    frames = torch.from_numpy(read_frames(load(run / "config.toml").data.path))
    images = frames[:20].numpy()
    g = torch.Generator().manual_seed(0)
    ex = reweighted_stack(stack, frames, "exemplar", g)
    spread = spread_exemplar_stack(ex, frames, g)
    stacks = [ex] if spread is None else [ex, spread]
    assert (spread is None) == (stages == STAGES)  # spread exemplars: a competitive top only
    got = evaluation.top_stage_tables(stacks, images, batch=8)
    for s, table in zip(stacks, got, strict=True):
        whole = evaluation.unit_tables(s, images, batch=8, layers=evaluation.LAYERS,
                                       stages=(1,))
        np.testing.assert_array_equal(table, evaluation.top_set(whole, 1)[0])
    if spread is not None:
        assert not np.array_equal(got[0], got[1])


def test_the_trainings_ranking_of_the_dataset_is_used_not_scanned_again(tmp_path, monkeypatch):
    """A run whose training wrote ``corpus_tops.json`` (the workers' ranking, after
    ``model.pt``): evaluate takes its top frames from it instead of running the dataset
    through the stack, and leaves the file as training wrote it (more frames a unit than
    evaluate keeps)."""
    from cluster.state_io import read_trained_stack
    from cluster.topk import shard_row_counts
    from jobs.report import corpus_tops as ct
    from jobs.report.evaluation import TOP_FRAMES
    from pipeline.reader import list_shards

    run = _run_folder(tmp_path, KINDS)
    stack, _ = read_trained_stack(run / "model.pt")
    data = load(run / "config.toml").data.path
    shards = list_shards(data)
    tops = ct.corpus_tops(stack, read_frames(data), 1, TOP_FRAMES)
    path = run / ct.FILE
    path.write_text(ct.to_json(1, tops, shards, shard_row_counts(shards),
                               ct.model_digest(run / "model.pt"), kept=TOP_FRAMES))
    written = path.read_text()
    assert len(json.loads(written)["layers"]["pooled"]["ids"][0]) == 64  # all 64 frames

    def no_scan(*args, **kwargs):
        raise AssertionError("evaluate scanned the dataset again")

    monkeypatch.setattr(ct, "corpus_tops", no_scan)
    assert main(["--run", str(run), "--filters", "20", "--splits", "3", "--quiet"]) == 0
    assert path.read_text() == written
    path.write_text(written.replace('"model_sha256": "', '"model_sha256": "0'))  # another model
    with pytest.raises(AssertionError, match="scanned the dataset again"):
        main(["--run", str(run), "--filters", "20", "--splits", "3", "--quiet"])


def check_corpus_tops(run: Path) -> None:
    """``RUN/corpus_tops.json``: every top-stage unit's best frames of the whole dataset (up to
    ``KEPT``), numbered as visualize numbers them, equal to ranking the full up-pass's
    responses."""
    from cluster.state_io import read_trained_stack
    from jobs.report.corpus_tops import KEPT
    from models.neurons.units import stage_maps

    doc = json.loads((run / "corpus_tops.json").read_text())
    frames = read_frames(load(run / "config.toml").data.path)
    assert doc["stage"] == 1 and doc["rows"] == [32, 32] and set(doc["layers"]) == {"pooled"}
    stack, _ = read_trained_stack(run / "model.pt")
    maps = dict(stage_maps(stack, torch.from_numpy(frames)))[1]["pooled"].flatten(1)
    want = torch.topk(maps.T, min(KEPT, len(frames)), dim=1)
    ids = np.asarray(doc["layers"]["pooled"]["ids"])
    rows = (ids >> 32) * 32 + (ids & 0xFFFFFFFF)  # 32 frames a shard
    torch.testing.assert_close(torch.tensor(doc["layers"]["pooled"]["values"]), want.values)
    torch.testing.assert_close(maps.T.gather(1, torch.from_numpy(rows)), want.values)


def test_a_run_with_an_untrained_top_stage_is_refused(tmp_path, capsys):
    run = _run_folder(tmp_path, trained=1)
    assert main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 2 stages trained" in err and "--resume" in err


def test_a_config_of_another_model_beside_the_model_is_refused(tmp_path, capsys):
    """A ``config.toml`` edited (or copied from another run) to another ``model.input_size``
    gave "frames have shape (256, 1, 32, 32), the stack expects (N, 1, 16, 16); resize ... at
    ingest": a hint to re-ingest, when the run folder's two files disagree."""
    run = _run_folder(tmp_path)
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("[model]\ninput_size = 16",
                                                  "[model]\ninput_size = 32"))
    assert main(["--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "describe different models (model.input_size: 32 vs 16)" in err, err
    assert err.count("\n") == 1 and not (run / "evaluation.json").exists()


def test_folder_probe_and_errors(tmp_path, capsys):
    run = _run_folder(tmp_path)
    probe = tmp_path / "probe"
    rng = np.random.default_rng(0)
    for name, n in (("cats <b>", 4), ("dogs", 6)):  # odd names are kept as plain strings
        (probe / name).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)  # not square, colour
            cv2.imwrite(str(probe / name / f"{i}.png"), img)
    args = ["--run", str(run), "--probe", str(probe), "--filters", "20", "--splits", "2",
            "--quiet"]
    assert main(args + ["--positive", "cats <b>"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    check_contract(result, {"cats <b>": 4, "dogs": 6}, 2)
    assert result["best_neuron"]["by_size"] is None
    assert result["reference"]["mean_face_template"] is None
    capsys.readouterr()
    assert main(args) == 2  # no "faces" class
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--positive" in err
    (probe / "dogs" / "broken.png").write_bytes(b"not an image")
    assert main(args + ["--positive", "dogs"]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main(["--run", str(tmp_path / "nope")]) == 2
    assert "catneuron train" in capsys.readouterr().err


def test_a_probe_that_brightness_gives_away_is_warned(tmp_path, capsys):
    run = _run_folder(tmp_path)
    probe = tmp_path / "probe"
    rng = np.random.default_rng(1)
    for name, level in (("faces", 180), ("other", 60)):  # the classes differ in brightness
        (probe / name).mkdir(parents=True)
        for i in range(8):
            img = (level + rng.integers(-20, 20, (24, 24, 3))).astype(np.uint8)
            cv2.imwrite(str(probe / name / f"{i}.png"), img)
    assert main(["--run", str(run), "--probe", str(probe), "--filters", "20", "--splits", "2",
                 "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["probe"]["confound_balanced_accuracy"] > 0.9
    assert result["probe"]["confound_warning"] and result["verdict"]["probe_confound"] > 0.9
    captured = capsys.readouterr()
    assert "warning: on this probe, image statistics alone score" in captured.err
    assert "image statistics alone separate the probe" in captured.out  # in the verdict


@pytest.mark.slow
def test_end_to_end_on_a_trained_run(ray_cluster, tmp_path):
    """catneuron train (parameter servers on Ray) then catneuron evaluate on its run."""
    from jobs.train import main as train

    data = make_dataset(tmp_path / "data", n_videos=2, frames_per_video=64, size=16,
                        shard_rows=32)
    run = tmp_path / "run"
    assert train([f'--data.path="{data}"', "--data.batch_size=16", "--model.input_size=16",
                  f"--model.stages={STAGES}", "--train.stages=2", "--workers", "2",
                  "--ps-shards", "2", "--mode", "sync", "--steps", "4", "--run-dir", str(run),
                  "--quiet"]) == 0
    assert main(["--run", str(run), "--filters", "100", "--splits", "5", "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    check_contract(result, BUILTIN, 2)
    check_builtin(result)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fast_demo_evaluation_scores_the_matched_probe(demo_run):
    """The demo's own evaluation: the reporting half of the matched-twin probe, confound-free,
    with the headline unit's top frames counted in the labelled corpus (a third are faces)."""
    assert demo_run.continued.returncode == 0, demo_run.continued.stdout[-3000:]
    result = json.loads((demo_run.out / "train" / "evaluation.json").read_text())
    check_contract(result, BUILTIN, 2, (("pooled",), ("pooled",)),  # tied, then competitive
                   competitive_top=True)
    check_builtin(result)
    assert result["probe"]["confound_balanced_accuracy"] <= 0.6
    best = result["best_neuron"]
    assert abs(best["corpus_face_base_rate"] - 1 / 3) < 0.05
    assert 0 <= best["corpus_top100_face_share"] <= 1
    assert (best["corpus_top100_face_appearances"] <= best["corpus_top100_appearances"] <= 100
            and best["corpus_top100_face_appearances"] <= best["corpus_face_appearances"])
    assert (best["corpus_top100_face_appearances"] > 0) == (best["corpus_top100_face_share"] > 0)
    assert result["verdict"]["text"] in demo_run.continued.stdout


def test_the_random_halves_keep_each_group_on_one_side():
    """Without ``--choose-on``, the evaluation's random halves keep a face and its twin (one
    group: same background, place and size) on one side of every split: a twin across the
    split would let the choosing half see the test half's backgrounds. Guards
    :func:`~jobs.report.evaluation.held_out` passing ``groups`` on to the halves (dropping
    them changes no figure's form, only its honesty)."""
    from jobs.report.evaluation import held_out

    y = np.tile([1, 0], 20)
    groups = np.repeat(np.arange(20), 2)  # an image and its twin
    protocol = {"n_splits": 6, "n_thresholds": 20, "seed": 3}
    splits, scoring = held_out(y, protocol, groups, None)
    assert len(splits) == 6 and scoring == protocol
    for choose, test in splits:
        assert len(choose) + len(test) == 40
        assert set(groups[choose.numpy()]).isdisjoint(groups[test.numpy()])


def test_the_corpus_share_is_the_face_share_of_the_headline_units_highest_frames():
    """Faces labelled on exactly the 100 frames where the headline unit responds most (by the
    full up-pass): its top-100 face share is 1 and the base rate the labelled third, whether
    the frames are ranked here or taken from the training's ranking (``tops``). Guards the
    share's direction (highest, not lowest, responses) and that it ranks the headline unit,
    not another: the demo's test only bounds the share to [0, 1]."""
    from jobs.report.evaluation import TOP_FRAMES, corpus_share, unit_tables
    from models.neurons.topk import RunningTopK
    from models.stack import StackConfig, StageConfig

    config = StackConfig(input_size=24, input_lcn_sigma=0.0, stages=(
        StageConfig(kind="tied", learner="kmeans", field=3, n_maps=4, pool=2, pool_stride=2,
                    sign_split=True, rows_per_frame=4),
        StageConfig(kind="competitive", learner="rbm", field=3, n_maps=6, dims=8,
                    sizes=(28, 20), rows_per_frame=4)))
    frames = np.random.default_rng(0).integers(0, 256, (3 * TOP_FRAMES, 1, 24, 24),
                                               dtype=np.uint8)
    stack = RBMStack(config, device="cpu", generator=torch.Generator().manual_seed(0))
    for k in (0, 1):
        stack.prepare(k, torch.from_numpy(frames[:40]),
                      generator=torch.Generator().manual_seed(k))
    table = unit_tables(stack, frames, stages=(1,))["1/pooled"]  # (300, U)
    index = 3
    order = np.argsort(-table[:, index], kind="stable")
    assert table[order[TOP_FRAMES - 1], index] > table[order[TOP_FRAMES], index]  # no tie
    kinds = ["none"] * len(frames)
    for i in order[:TOP_FRAMES]:
        kinds[i] = "face"
    best = {"stage": 1, "layer": "pooled", "index": index}
    got = corpus_share(stack, best, frames, kinds, {})
    assert got["corpus_top100_face_share"] == 1.0
    assert got["corpus_face_base_rate"] == round(1 / 3, 4)
    tops = RunningTopK(table.shape[1], TOP_FRAMES, dtype=torch.float64)
    tops.update(torch.from_numpy(table), torch.arange(len(frames)))
    assert corpus_share(stack, best, frames, kinds, {"pooled": tops}) == got


def test_appearance_counts_count_each_stretch_of_frames_once():
    """Top frames from two face stretches and one bare stretch are 3 appearances, 2 of them
    faces; the corpus holds 3 face stretches (two videos may reuse a placement number)."""
    from jobs.report.evaluation import appearance_counts

    kinds = ["face"] * 6 + ["none"] * 3 + ["face"] * 3
    appearances = ["v:p0"] * 3 + ["v:p1"] * 3 + ["v:b6"] * 3 + ["w:p0"] * 3
    got = appearance_counts(np.array([0, 1, 2, 3, 6, 7]), kinds, appearances)
    assert got == {"corpus_top100_appearances": 3, "corpus_top100_face_appearances": 2,
                   "corpus_face_appearances": 3}
    assert set(appearance_counts(np.array([0]), kinds, None).values()) == {None}


def test_a_probe_no_split_can_score_is_refused_before_any_feature(tmp_path, capsys,
                                                                   monkeypatch):
    """One image of the positive class: no held-out split has it on both sides. Refused in one
    line before the probe goes through the stack."""
    import jobs.report.evaluation as evaluation

    run = _run_folder(tmp_path)
    probe = tmp_path / "probe"
    rng = np.random.default_rng(0)
    for name, n in (("cats", 1), ("dogs", 5)):
        (probe / name).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(probe / name / f"{i}.png"), rng.integers(0, 256, (32, 32, 3),
                                                                      dtype=np.uint8))

    def no_features(*args, **kwargs):
        raise AssertionError("features computed for a probe that cannot be scored")

    monkeypatch.setattr(evaluation, "report", no_features)
    assert main(["--run", str(run), "--probe", str(probe), "--positive", "cats",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fewer than 2 images (or groups) of class 'cats'" in err


def test_no_exemplar_draw_is_refused(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nope"), "--baseline-draws", "0"]) == 2
    assert "--baseline-draws must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_out_of_range_is_refused_before_any_work(tmp_path, capsys, seed):
    assert main(["--run", str(tmp_path / "nope"), "--seed", seed]) == 2
    assert f"--seed {seed}: must be from 0" in capsys.readouterr().err
