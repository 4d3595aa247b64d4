"""``RUN/corpus_tops.json`` (``jobs.report.corpus_tops``): evaluate's top frames per unit are
given back to visualize only when they answer its scan: same dataset, written for this
``model.pt`` (its bytes' digest, not the files' times), enough frames, every id a frame of the
dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.report import corpus_tops
from models.neurons.topk import RunningTopK

SHARDS = ["/data/part-00000.parquet", "/data/part-00001.parquet"]
ROWS = [5, 4]


def _run(tmp_path: Path) -> tuple[Path, RunningTopK]:
    """A run folder with a model.pt and, written for it, the tops of 3 units over 9 frames."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"model")
    responses = torch.from_numpy(np.random.default_rng(0).normal(size=(9, 3)))
    top = RunningTopK(3, 40)
    top.update(responses, torch.arange(9))
    model = corpus_tops.model_digest(run / "model.pt")
    (run / corpus_tops.FILE).write_text(
        corpus_tops.to_json(1, {"pooled": top}, SHARDS, ROWS, model))
    return run, top


def test_a_file_with_every_frame_answers_for_more_frames_than_the_dataset_holds(tmp_path):
    run, top = _run(tmp_path)
    got = corpus_tops.read(run, SHARDS, ROWS, 20)[(1, "pooled")]  # 9 frames in all
    assert got.ids.shape == (3, 9)
    rows = corpus_tops.read_rows(run, SHARDS, ROWS, 1, 20)["pooled"]
    assert torch.equal(rows.ids, top.ids)  # numbered as the frames read in order
    assert corpus_tops.read_rows(run, SHARDS, ROWS, 0, 20) is None  # another stage


def test_the_file_gives_back_each_units_frames_as_visualize_numbers_them(tmp_path):
    run, top = _run(tmp_path)
    got = corpus_tops.read(run, SHARDS, ROWS, 4)
    assert set(got) == {(1, "pooled")}
    tops = got[(1, "pooled")]
    assert tops.ids.shape == (3, 4)
    rows = top.ids[:, :4]  # row 7 of the frames read in order = shard 1, row 2
    want = torch.where(rows < 5, rows, (1 << 32) + rows - 5)
    assert torch.equal(tops.ids, want)
    torch.testing.assert_close(tops.values, top.values[:, :4].float())
    chosen = corpus_tops.select(tops, [2, 0])
    assert torch.equal(chosen.ids, want[[2, 0]])


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit`` to the file's JSON document."""
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(edit(doc)))


def _cut_rows(doc: dict) -> dict:
    """The pooled layer's first 2 units only (ids and values still agree in shape)."""
    for key in ("ids", "values"):
        doc["layers"]["pooled"][key] = doc["layers"]["pooled"][key][:2]
    return doc


def test_a_layer_of_another_width_than_the_models_is_left_to_the_scan(tmp_path):
    run, _ = _run(tmp_path)
    assert set(corpus_tops.read(run, SHARDS, ROWS, 4, units={(1, "pooled"): 3})) == {
        (1, "pooled")}
    assert corpus_tops.read(run, SHARDS, ROWS, 4, units={(1, "hidden"): 3}) == {}  # not asked
    _rewrite(run / corpus_tops.FILE, _cut_rows)
    assert corpus_tops.read(run, SHARDS, ROWS, 4, units={(1, "pooled"): 3}) == {}


def test_a_copied_run_keeps_its_file_whatever_the_files_times(tmp_path):
    """``cp -r`` gives the copy's files new times, the file older than ``model.pt`` when
    copied first: it still answers (the times once decided, and a copy scanned again)."""
    run, _ = _run(tmp_path)
    t = (run / "model.pt").stat().st_mtime
    os.utime(run / corpus_tops.FILE, (t - 60, t - 60))
    assert set(corpus_tops.read(run, SHARDS, ROWS, 4)) == {(1, "pooled")}


@pytest.mark.parametrize("change", ["model_retrained", "model_older", "old_schema",
                                    "other_shards", "other_rows", "too_few",
                                    "id_outside", "not_json", "shapes_disagree", "a_list",
                                    "layers_a_list", "nested_too_deep"])
def test_a_file_that_does_not_answer_the_scan_is_not_used(tmp_path, change):
    run, _ = _run(tmp_path)
    path, shards, rows, k = run / corpus_tops.FILE, SHARDS, ROWS, 4
    if change == "model_retrained":
        (run / "model.pt").write_bytes(b"another model")
    elif change == "model_older":  # another model copied in with its old time kept (cp -p)
        (run / "model.pt").write_bytes(b"another model")
        t = path.stat().st_mtime
        os.utime(run / "model.pt", (t - 60, t - 60))
    elif change == "old_schema":  # written before the digest: it cannot say which model
        _rewrite(path, lambda d: {k: v for k, v in {**d, "schema": 1}.items()
                                  if k != "model_sha256"})
    elif change == "other_shards":
        shards = ["/data/part-00000.parquet", "/data/part-00002.parquet"]
    elif change == "other_rows":
        rows = [5, 5]
    elif change == "too_few":  # 3 frames a unit of the 9: no answer for 4
        doc = json.loads(path.read_text())
        for key in ("ids", "values"):
            doc["layers"]["pooled"][key] = [row[:3] for row in doc["layers"]["pooled"][key]]
        path.write_text(json.dumps(doc))
    elif change == "id_outside":
        doc = json.loads(path.read_text())
        doc["layers"]["pooled"]["ids"][0][0] = (1 << 32) + 4  # shard 1 holds rows 0..3
        path.write_text(json.dumps(doc))
    elif change == "shapes_disagree":  # ids of 3 units, values of 2
        _rewrite(path, lambda d: {**d, "layers": {"pooled": {
            "ids": d["layers"]["pooled"]["ids"], "values": d["layers"]["pooled"]["values"][:2]}}})
    elif change == "a_list":
        _rewrite(path, lambda d: [d])
    elif change == "layers_a_list":
        _rewrite(path, lambda d: {**d, "layers": [d["layers"]["pooled"]]})
    elif change == "nested_too_deep":  # json's RecursionError, not a ValueError
        path.write_text("[" * 100000)
    else:
        path.write_text("{not json")
    assert corpus_tops.read(run, shards, rows, k) == {}
    assert corpus_tops.read(tmp_path, SHARDS, ROWS, 4) == {}  # no file at all
