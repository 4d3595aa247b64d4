"""The visualize job's small parts: images, unit choice, evaluation reading, training curves."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from jobs.report.plots import mark_box, save_image, save_invariance, signed_image, tile_grid
from jobs.report.training_curves import series, write_training_curves
from jobs.report.unit_selection import (
    activation_variance,
    choose_units,
    evaluated_units,
    evaluation_rankings,
    rank_units,
)


def test_images_exact():
    img = signed_image(np.array([[[-2.0, 0.0, 1.0]]]))  # (C=1, H=1, W=3)
    assert img.shape == (1, 3, 3) and img[0, :, 0].tolist() == [0.0, 0.5, 0.75]
    grid = tile_grid([np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.5), np.ones((2, 2, 3))], 2)
    assert grid.shape == (5, 5, 3)
    assert grid[0, 2, 0] == 1.0 and grid[3, 0, 0] == 1.0 and grid[0, 3, 0] == 0.5
    marked = mark_box(np.zeros((4, 4, 3)), [1, 1, 3, 4], 2)  # rows 1..2, cols 1..3 -> x2
    red = marked[..., 0] > 0.9
    assert red[2, 2:8].all() and red[5, 2:8].all() and red[2:6, 2].all() and red[2:6, 7].all()
    assert red.sum() == 2 * 6 + 2 * 2 and not red[3:5, 3:7].any()


def test_png_round_trip(tmp_path):
    import cv2

    img = np.random.default_rng(0).random((5, 7, 3))
    save_image(tmp_path / "a" / "x.png", img)
    back = cv2.imread(str(tmp_path / "a" / "x.png"))[:, :, ::-1] / 255.0  # BGR -> RGB
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-9


def test_rank_and_choose_units():
    variance = torch.tensor([0.1, 0.5, 0.3, 0.0, 0.2])
    ranked = rank_units([{"index": 3}, {"index": 9}], variance, 5)  # 9 is out of range
    assert ranked == [3, 1, 2, 4, 0]
    assert rank_units([{"index": 3}], torch.empty(0), 5) == [3, 0, 1, 2, 4]  # no variance
    rng = np.random.default_rng(0)
    assert choose_units(ranked, 2, 0, rng) == ([3, 1], [1, 3])
    assert choose_units(ranked, 2, 9, rng) == ([3, 1], [0, 1, 2, 3, 4])  # sample capped
    selective, detailed = choose_units(ranked, 2, 2, rng)
    assert selective == [3, 1] and len(detailed) == 4 and set(selective) <= set(detailed)
    assert detailed == sorted(detailed)


def test_the_activation_variance_of_one_frame_is_zero_not_nan():
    """A dataset of one frame (or --sample-frames 1): every unit's variance is 0, so no NaN
    reaches stage{k}.json (JSON has no NaN) nor the ranking by variance."""
    from jobs.config import load
    from models.stack import RBMStack

    config = load(None, ["--model.input_size=16",
                         "--model.stages=[{field=6, stride=2, n_maps=4, pool=2}]"])
    stack = RBMStack(config.model, generator=torch.Generator().manual_seed(0), device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    one, = activation_variance(stack, frames[:1], 0)
    assert torch.equal(one, torch.zeros_like(one))
    three, = activation_variance(stack, frames, 0)  # two or more frames: the sample variance
    assert torch.isfinite(three).all() and (three > 0).any()


def test_evaluation_rankings(tmp_path):
    assert evaluation_rankings(tmp_path) == {}
    (tmp_path / "evaluation.json").write_text("{not json")
    assert evaluation_rankings(tmp_path) == {}
    stages = [{"stage": 1, "layer": "hidden", "ranking": [{"index": 1}]},
              {"stage": 1, "layer": "pooled", "ranking": [{"index": 4}, {"index": "x"}]}]
    (tmp_path / "evaluation.json").write_text(json.dumps({"schema": 1, "stages": stages}))
    assert evaluation_rankings(tmp_path) == {1: [{"index": 4}]}


def test_evaluated_units_name_the_headline_and_each_layers_best(tmp_path):
    assert evaluated_units(tmp_path).headline is None
    stages = [{"stage": 1, "layer": "hidden", "best": {"index": 6}, "ranking": [{"index": 6}]},
              {"stage": 1, "layer": "pooled", "best": {"index": 2}, "ranking": []},
              {"stage": 1, "layer": "pooled_lcn", "best": {"index": 9}, "ranking": []}]
    doc = {"stages": stages, "best_neuron": {"stage": 1, "layer": "pooled", "index": 2},
           "verdict": {"text": "...", "best": {"stage": 1, "layer": "hidden", "index": 4}}}
    (tmp_path / "evaluation.json").write_text(json.dumps(doc))
    units = evaluated_units(tmp_path)
    assert units.headline == (1, "hidden", 4)  # the verdict's, not best_neuron's
    assert units.must_show(1, "hidden", 32) == [6, 4] and units.must_show(1, "pooled", 8) == [2]
    assert units.must_show(1, "hidden", 5) == [4]  # 6 is no unit of a 5-unit layer
    assert (1, "pooled_lcn") not in units.rankings  # a normalised output is not drawn
    del doc["verdict"]  # an older evaluation: best_neuron is the headline
    (tmp_path / "evaluation.json").write_text(json.dumps(doc))
    assert evaluated_units(tmp_path).headline == (1, "pooled", 2)


def test_an_evaluation_nested_too_deep_to_parse_is_read_as_none(tmp_path):
    """json's RecursionError on a hostile evaluation.json was a traceback in visualize."""
    (tmp_path / "evaluation.json").write_text("[" * 100000)
    assert evaluated_units(tmp_path).rankings == {}


@pytest.mark.parametrize("entry", [{"layer": "pooled", "ranking": 5},
                                   {"layer": "pooled", "stage": "one", "ranking": []},
                                   {"layer": "pooled", "stage": True, "ranking": [{"index": 9}]}])
def test_a_damaged_evaluation_entry_is_skipped(tmp_path, entry):
    good = {"stage": 1, "layer": "pooled", "ranking": [{"index": 3}]}
    (tmp_path / "evaluation.json").write_text(json.dumps({"stages": [good, entry]}))
    assert evaluated_units(tmp_path).rankings == {(1, "pooled"): [{"index": 3}]}


@pytest.mark.parametrize("index", [-1, 999999])
def test_a_unit_index_outside_the_layer_is_never_shown(tmp_path, index):
    stages = [{"stage": 1, "layer": "pooled", "best": {"index": index}, "ranking": []},
              {"stage": 1, "layer": "hidden", "best": {"index": 2}, "ranking": []}]
    verdict = {"best": {"stage": 1, "layer": "hidden", "index": index}}
    (tmp_path / "evaluation.json").write_text(json.dumps({"stages": stages, "verdict": verdict}))
    units = evaluated_units(tmp_path)
    assert units.must_show(1, "pooled", 18) == [] and units.must_show(1, "hidden", 32) == [2]


def test_a_negative_headline_falls_back_to_the_older_best_neuron(tmp_path):
    doc = {"stages": [], "verdict": {"best": {"stage": 1, "layer": "hidden", "index": -1}},
           "best_neuron": {"stage": -1, "layer": "pooled", "index": 2}}
    (tmp_path / "evaluation.json").write_text(json.dumps(doc))
    assert evaluated_units(tmp_path).headline is None  # both damaged: no headline
    doc["best_neuron"]["stage"] = 1
    (tmp_path / "evaluation.json").write_text(json.dumps(doc))
    assert evaluated_units(tmp_path).headline == (1, "pooled", 2)


def test_training_curves(tmp_path):
    records = [{"stage": 0, "step": 10, "worker": 0, "recon_error": 0.5, "frames_per_s": 9.0},
               {"stage": 0, "step": 20, "worker": 0, "recon_error": 0.4},
               {"stage": 1, "step": 10, "recon_error": 0.3}]
    lines = "\n".join(json.dumps(r) for r in records) + "\n{truncated"
    (tmp_path / "metrics.jsonl").write_text(lines)
    assert series(records, "recon_error") == {"stage 0 worker 0": [(10.0, 0.5), (20.0, 0.4)],
                                              "stage 1": [(10.0, 0.3)]}
    entries = write_training_curves(tmp_path, tmp_path / "out")
    assert entries == [{"title": "reconstruction error", "png": "curves/recon_error.png"},
                       {"title": "frames/s", "png": "curves/frames_per_s.png"}]
    assert all((tmp_path / "out" / e["png"]).stat().st_size > 0 for e in entries)


def test_steps_logged_again_after_a_rollback_replace_their_first_records():
    """A rollback to the step-8 checkpoint logs steps 9 and 13 again: each line keeps one point
    a step, the later one, in step order."""
    steps = [1, 5, 9, 13, 9, 13, 17]
    records = [{"stage": 0, "step": s, "worker": 0, "recon_error": float(i)}
               for i, s in enumerate(steps)]
    assert series(records, "recon_error") == {
        "stage 0 worker 0": [(1.0, 0.0), (5.0, 1.0), (9.0, 4.0), (13.0, 5.0), (17.0, 6.0)]}


def test_invariance_panels_in_order_one_per_curve(tmp_path):
    curves = {"scale": [[0.5, 0.1], [1.0, 0.9]], "rotation": [[-30, 0.2], [0, 0.8], [30, 0.3]],
              "translation": [[-4, 0.4], [4, 0.5]]}
    path = save_invariance(tmp_path / "a" / "inv.png", curves, "stage 0 pooled unit 3")
    assert cv2.imread(str(path)).shape == (280, 900, 3)  # 3 panels of 3 x 2.8 in, 100 dpi
    one = save_invariance(tmp_path / "one.png", {"shift": [[0, 1.0], [1, 2.0]]})
    assert cv2.imread(str(one)).shape == (280, 300, 3)


def test_figures_leave_no_pyplot_state(tmp_path):
    """The report and the gallery draw with the Figure API: drawing loads no pyplot (whose
    global figures would pile up over thousands of units) and sets no backend."""
    code = f"""
import sys
from pathlib import Path
from jobs.gallery.plots import plot_curve, plot_invariance
from jobs.report.plots import save_lines
out = Path({str(tmp_path)!r})
save_lines(out / "l.png", {{"a": [(0, 1), (1, 2)]}}, title="t", xlabel="x", ylabel="y")
plot_curve([{{"stage": 0, "step": 1, "recon_error": 0.5}}], "recon_error", "e", out / "c.png")
plot_invariance({{"scale": [[1, 2], [2, 3]]}}, out / "i.png")
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert {p.name for p in tmp_path.iterdir()} == {"l.png", "c.png", "i.png"}


def test_a_metrics_record_with_a_step_that_is_not_a_number_is_left_out_of_the_curves():
    records = [{"stage": 0, "step": 1, "recon_error": 0.5}, {"stage": 0, "step": "x",
               "recon_error": 0.4}, {"stage": 0, "step": float("nan"), "recon_error": 0.3},
               {"step": 2, "recon_error": 0.2}]
    assert series(records, "recon_error") == {"stage 0": [(1.0, 0.5)], "stage None": [(2.0, 0.2)]}


def test_a_number_too_long_for_a_float_is_left_out_of_the_curves(tmp_path):
    """JSON integers have no limit: a damaged metrics.jsonl holding one too long for a float
    stopped visualize, after every picture was drawn, with an OverflowError traceback."""
    huge = 10**400
    records = [{"stage": 0, "step": 1, "recon_error": 0.5},
               {"stage": 0, "step": huge, "recon_error": 0.4},
               {"stage": 0, "step": 2, "recon_error": -huge}]
    assert series(records, "recon_error") == {"stage 0": [(1.0, 0.5)]}
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    entries = write_training_curves(tmp_path, tmp_path / "out")
    assert [e["png"] for e in entries] == ["curves/recon_error.png"]
