"""The gallery's HTML without a browser: escaping, path checks, missing inputs, the verdict."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cluster.runlog import read_metrics
from jobs.gallery import build_gallery
from jobs.gallery.figures import verdict
from jobs.gallery.inputs import is_number, plain_relative, safe_file
from jobs.gallery.plots import curve_series, histogram_svg
from tests.jobs.gallery_run import (
    HOSTILE_CLASS,
    HOSTILE_SOURCE,
    VERDICT_TEXT,
    baselines,
    make_run,
    score,
    write_evaluation,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("gallery"))
    build_gallery(run)
    return run


def _page(run: Path, name: str) -> str:
    return (run / "gallery" / name).read_text()


@pytest.mark.parametrize("rel", ["../x.png", "/etc/passwd", "a/../b.png", "", "a\\b.png",
                                 "a//b.png", "./a.png", "~/x.png", None, 3, ["a.png"]])
def test_plain_relative_refuses_anything_but_a_plain_relative_path(rel):
    assert plain_relative(rel) is None


def test_safe_file_accepts_images_inside_the_run_only(tmp_path):
    run = tmp_path / "run"
    (run / "vis").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    (run / "vis" / "a.png").write_bytes(png)
    (run / "vis" / "text.png").write_text("not an image")
    (tmp_path / "outside.png").write_bytes(png)
    os.symlink(tmp_path / "outside.png", run / "vis" / "link.png")
    assert safe_file(run / "vis", "a.png", run) == run / "vis" / "a.png"
    assert safe_file(run / "vis", "text.png", run) is None
    assert safe_file(run / "vis", "link.png", run) is None
    assert safe_file(run / "vis", "../../outside.png", run) is None
    assert safe_file(run / "vis", "missing.png", run) is None


def test_hostile_names_are_escaped(run):
    index = _page(run, "index.html")
    assert "&lt;img src=x onerror=alert(1)&gt;" in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    for page in (run / "gallery").rglob("*.html"):
        html = page.read_text()
        assert HOSTILE_SOURCE not in html and HOSTILE_CLASS not in html, page
        assert "<script" not in html, page


def test_paths_leaving_the_run_are_refused_and_shown_missing(run):
    unit0 = _page(run, "stage0/unit0.html")
    assert "passwd" not in re.findall(r'src="([^"]*)"', unit0).__str__()
    assert "hostname" not in re.findall(r'src="([^"]*)"', unit0).__str__()
    assert "missing: weights: ../../../../etc/passwd refused or not found" in unit0
    assert "missing: top frame 0: /etc/hostname refused or not found" in unit0
    assert "missing: optimal stimulus: stage0/does_not_exist.png refused or not found" in unit0
    assert "missing: invariance curves: not computed" in _page(run, "stage0/unit3.html")
    assert 'src="unit1_invariance.png"' in _page(run, "stage0/unit1.html")  # drawn here


def test_units_ranked_by_selectivity_and_patch_marked(run):
    stage0 = _page(run, "stage0.html")
    table = stage0[stage0.index('<table class="units">'):]
    order = [int(i) for i in re.findall(r'href="stage0/unit(\d+)\.html"', table)]
    assert order[:6] == [0, 1, 2, 3, 4, 5]  # the evaluation ranking, best first
    assert sorted(order) == list(range(18))
    unit5 = _page(run, "stage1/unit5.html")
    # box [y0, x0, y1, x1] = [8, 8, 40, 40] on a 64x64 frame (its PNG is 128x128)
    assert 'style="left:12.50%;top:12.50%;width:50.00%;height:50.00%"' in unit5
    assert unit5.count('<polyline fill="none"') == 3  # one histogram line per probe class
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (" in unit5  # its legend, escaped
    assert 'src="../../visualize/stage1/unit5_weights.png"' in unit5


def test_overview_answers_first_with_every_baseline(run):
    index = _page(run, "index.html")
    assert index.index('id="answer"') < index.index('id="classes"') < index.index('id="dataset"')
    assert f'<p class="lead verdict">{VERDICT_TEXT}</p>' in index  # the verdict, as is
    assert "older version" not in index
    for name in ("always negative", "best single pixel", "same network, random weights",
                 "best linear filter from training patches", "best unit of stage 0"):
        assert f"baseline: {name}" in index
    assert "HTTP Error 404: Not Found" in index
    assert "4 sources (2 ok, 2 failed), 160 frames in 2 shards" in index
    assert "metrics.jsonl: 1 unreadable line(s) skipped" in index


def test_older_evaluation_without_verdict_is_read_the_older_way_and_said_so(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_evaluation(run)
    ev = json.loads((run / "evaluation.json").read_text())
    del ev["verdict"]
    ev["best_neuron"] = score(0.68, 0.7) | {"stage": 1, "layer": "pooled", "index": 5}
    (run / "evaluation.json").write_text(json.dumps(ev))
    index = build_gallery(run).read_text()
    assert "is from an older version of <code>catneuron evaluate</code>" in index
    assert "No unit beats the baselines." in index
    assert "0.680 ± 0.030" in index and "0.660" in index
    assert 'id="headline"' not in index  # no visualisation here: named, without a link
    assert "Headline unit: <strong>stage 1 pooled #5</strong> (no page" in index


def test_verdict_margin_must_exceed_the_split_spread():
    assert verdict(score(0.70, 0.8, std=0.03), baselines())["state"] == "found"
    assert verdict(score(0.68, 0.8, std=0.03), baselines())["state"] == "not_found"
    assert verdict(score(0.9, 0.9), {})["state"] == "unknown"
    assert verdict(None, baselines())["state"] == "unknown"


def test_a_drawn_baseline_is_named_with_its_draws_and_led_by_more_than_their_spread():
    """A baseline drawn several times (evaluation.json's ``draws``) is labelled with how many
    and their range, and a lead within the spread of its draws does not count."""
    from models.neurons.draws import drawn_score

    ex = drawn_score([score(ba, 0.8) | {"index": i} for i, ba in enumerate((0.6, 0.62, 0.8))])
    rows = verdict(score(0.78, 0.9, std=0.03), {**baselines(), "exemplar_filters": ex})
    assert rows["state"] == "not_found"  # leads the mean 0.673 by 0.107, the draws' spread 0.110
    assert verdict(score(0.80, 0.9, std=0.03), {"exemplar_filters": ex})["state"] == "found"
    named = next(r for r in rows["rows"] if r["key"] == "exemplar_filters")
    assert named["name"].endswith("(mean of 3 draws, 0.600 to 0.800, spread 0.110)")
    broken = {**ex, "draws": {"heldout_balanced_accuracy": ["x"], "std": "y"}}
    assert verdict(score(0.78, 0.9, std=0.03), {"exemplar_filters": broken})["state"] == "found"


def test_empty_and_broken_runs_give_pages_not_crashes(tmp_path):
    index = build_gallery(tmp_path).read_text()
    for text in ("evaluation missing", "run config missing", "visualisation missing",
                 "Not evaluated yet"):
        assert text in index
    (tmp_path / "evaluation.json").write_text("{truncated")
    vis = tmp_path / "visualize"
    vis.mkdir()
    (vis / "index.json").write_text(json.dumps(
        {"stages": [{"stage": 0, "file": "../../secret.json"}, {"stage": "x", "file": "a"}],
         "curves": [{"title": "t", "png": "/etc/passwd"}]}))
    index = build_gallery(tmp_path).read_text()
    assert "evaluation unreadable: evaluation.json is not valid JSON" in index
    assert index.count("stage entry refused") == 2
    assert "missing: t: /etc/passwd refused or not found" in index


def test_files_nested_too_deep_to_parse_give_notes_not_a_crash(tmp_path):
    """json and tomllib raise RecursionError (not a ValueError) on a document nested past
    Python's recursion limit: a hostile evaluation.json, index.json, metrics.jsonl line or
    config.toml stopped the gallery with that traceback."""
    deep = "[" * 100000
    (tmp_path / "config.toml").write_text(f"a = {deep}")
    (tmp_path / "evaluation.json").write_text(deep)
    (tmp_path / "metrics.jsonl").write_text(deep + "\n")
    (tmp_path / "visualize").mkdir()
    (tmp_path / "visualize" / "index.json").write_text(deep)
    index = build_gallery(tmp_path).read_text()
    assert "config.toml is not valid TOML" in index
    assert "evaluation unreadable: evaluation.json is not valid JSON" in index
    assert "visualisation unreadable: index.json is not valid JSON" in index
    assert "metrics.jsonl: 1 unreadable line(s) skipped" in index


def test_a_number_too_long_for_a_float_gives_a_page_not_a_crash(tmp_path):
    """JSON integers have no limit: a damaged metrics.jsonl or evaluation.json holding one too
    long for a float stopped the gallery with an OverflowError traceback."""
    huge = 10**400
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"stage": 0, "step": 1, "recon_error": 0.5}) + "\n"
        + json.dumps({"stage": 0, "step": huge, "recon_error": 0.4}) + "\n"
        + json.dumps({"stage": 0, "step": 2, "recon_error": huge}) + "\n")
    assert not is_number(huge) and not is_number(-huge) and is_number(2**62)
    assert curve_series(read_metrics(tmp_path), "recon_error") == {0: [(1, 0.5)]}
    assert "<html" in build_gallery(tmp_path).read_text()


def test_a_stage_or_unit_number_too_long_for_a_file_name_is_refused(tmp_path):
    """Numbers name the pages (stage{k}.html, stage{k}/unit{i}.html): a 301-digit index stopped
    the gallery with OSError "File name too long", leaving RUN/.gallery.tmp behind."""
    vis = tmp_path / "visualize"
    vis.mkdir()
    (vis / "index.json").write_text(json.dumps({"stages": [
        {"stage": 0, "file": "stage0.json"}, {"stage": 10**300, "file": "stage0.json"}]}))
    (vis / "stage0.json").write_text(json.dumps({"units": [{"index": 10**300}, {"index": 2}]}))
    index = build_gallery(tmp_path).read_text()
    assert "stage entry refused" in index and "stage 0: unit entry refused" in index
    assert (tmp_path / "gallery" / "stage0" / "unit2.html").is_file()
    assert not (tmp_path / ".gallery.tmp").exists()


def test_a_damaged_dataset_manifest_gives_a_page_not_a_crash(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "_manifest.json").write_text(json.dumps(
        {"schema_version": 2, "shards": None, "videos": 5}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(f'[data]\npath = "{data}"\n')
    assert "Not evaluated yet" in build_gallery(run).read_text()


def test_rebuild_replaces_the_gallery(run):
    stale = run / "gallery" / "stage9" / "unit3.html"  # a stage this run no longer has
    stale.parent.mkdir()
    stale.write_text("old")
    build_gallery(run)
    assert not stale.exists() and (run / "gallery" / "index.html").is_file()
    assert not (run / ".gallery.tmp").exists()


def _visualized(run: Path) -> Path:
    """The least run the command takes: a folder with ``visualize/index.json``."""
    (run / "visualize").mkdir(parents=True)
    (run / "visualize" / "index.json").write_text(json.dumps({"stages": []}))
    return run


@pytest.mark.parametrize("foreign, named", [
    ("my_photo_notes.txt", "my_photo_notes.txt"), ("stage0/cat.jpg", "stage0/cat.jpg"),
    ("notes/a.html", "notes"), ("link.html", "link.html")])
def test_a_gallery_holding_a_file_it_did_not_write_is_left_alone(tmp_path, foreign, named,
                                                                 capsys):
    from jobs.errors import UserError
    from jobs.gallery import main

    run = _visualized(tmp_path / "run")
    mine = run / "gallery" / foreign
    mine.parent.mkdir(parents=True)
    if foreign == "link.html":
        mine.symlink_to(tmp_path / "elsewhere.html")
    else:
        mine.write_text("precious")
    (run / "gallery" / "index.html").write_text("an older gallery")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(UserError, match=re.escape(f"{run / 'gallery' / named} was not "
                                                  "written by the gallery")):
        build_gallery(run)
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catneuron gallery: error: ") and err.count("\n") == 1
    assert f"{run / 'gallery' / named} was not written" in err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert (run / "gallery" / "index.html").read_text() == "an older gallery"


def test_a_gallery_path_that_is_a_file_or_a_link_is_left_alone(tmp_path):
    from jobs.errors import UserError

    run = _visualized(tmp_path / "run")
    (run / "gallery").write_text("precious")
    with pytest.raises(UserError, match="is not a folder the gallery wrote"):
        build_gallery(run)
    assert (run / "gallery").read_text() == "precious"
    (run / "gallery").unlink()
    (tmp_path / "mine").mkdir()
    (run / "gallery").symlink_to(tmp_path / "mine")
    with pytest.raises(UserError, match="is not a folder the gallery wrote"):
        build_gallery(run)
    assert (run / "gallery").is_symlink() and not (run / ".gallery.tmp").exists()


def test_a_stage_file_linked_out_of_the_run_is_refused(tmp_path):
    """``visualize/stage1.json -> /outside/secret.json``: not read, said refused."""
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"stage": 1, "layer": "pooled", "kind": "secret4711",
                                  "units": []}))
    run = _visualized(tmp_path / "run")
    (run / "visualize" / "stage1.json").symlink_to(secret)
    (run / "visualize" / "index.json").write_text(json.dumps(
        {"stages": [{"stage": 1, "file": "stage1.json"}]}))
    index = build_gallery(run).read_text()
    assert "stage entry refused" in index
    assert not (run / "gallery" / "stage1.html").exists()
    for page in (run / "gallery").rglob("*.html"):
        assert "secret4711" not in page.read_text(), page


def test_curves_average_workers():
    metrics = [{"stage": 0, "step": 10, "worker": 0, "recon_error": 0.5},
               {"stage": 0, "step": 10, "worker": 1, "recon_error": 0.7},
               {"stage": 1, "step": 0, "recon_error": "nan?"}]
    assert curve_series(metrics, "recon_error") == {0: [(10, pytest.approx(0.6))]}


def test_a_step_logged_again_after_a_resume_replaces_its_first_record_in_the_curves():
    """A resumed run logs the steps after its checkpoint again: a worker's later record of a
    step is the curve's, not the mean of the abandoned and the new figure."""
    metrics = [{"stage": 0, "step": 10, "worker": 0, "recon_error": 1.0},
               {"stage": 0, "step": 10, "worker": 1, "recon_error": 2.0},
               {"stage": 0, "step": 10, "worker": 0, "recon_error": 3.0}]  # after the resume
    assert curve_series(metrics, "recon_error") == {0: [(10, pytest.approx(2.5))]}


def test_histogram_svg_normalises_each_class_and_checks_lengths():
    assert histogram_svg([0, 1, 2], {"a": [1, 2, 3]}) is None  # 3 counts for 2 bins
    assert histogram_svg([0, 0], {"a": [1]}) is None
    svg = histogram_svg([0, 1, 2], {"a": [1, 3], "b": [2, 0], "bad": [1]})
    assert [s["name"] for s in svg["series"]] == ["a", "b"]
    (left, top, right, bottom), (w, h) = (44, 10, 10, 24), (svg["width"], svg["height"])
    pts = [tuple(map(float, p.split(","))) for p in svg["series"][0]["points"].split()]
    # a: fractions 0.25, 0.75 of a top of 1.0 (b's first bin): the step line's heights
    base, span = h - bottom, h - top - bottom
    assert [p[1] for p in pts] == pytest.approx(
        [base, base - 0.25 * span, base - 0.25 * span, base - 0.75 * span, base - 0.75 * span,
         base], abs=0.05)
    assert [p[0] for p in pts] == pytest.approx(
        [left, left, (left + w - right) / 2, (left + w - right) / 2, w - right, w - right])
    assert svg["series"][1]["total"] == 2


def test_a_histogram_whose_totals_or_range_overflow_is_not_drawn(tmp_path):
    """Finite counts or edges whose sum or span overflow a float (a hostile evaluation.json):
    ``int(inf)`` stopped the whole gallery with an OverflowError traceback, leaving
    ``.gallery.tmp`` behind; an infinite span drew "nan" points."""
    big = [1e308, 1e308]
    assert histogram_svg([0, 1, 2], {"a": big}) is None
    assert [s["name"] for s in histogram_svg([0, 1, 2], {"a": big, "b": [1, 2]})["series"]] == [
        "b"]
    assert histogram_svg([-1e308, 0, 1e308], {"a": [1, 2]}) is None
    run = tmp_path / "run"
    (run / "visualize").mkdir(parents=True)
    (run / "visualize" / "index.json").write_text(json.dumps({"stages": [
        {"stage": 0, "file": "stage0.json"}]}))
    (run / "visualize" / "stage0.json").write_text(json.dumps({"units": [{"index": 0}]}))
    (run / "evaluation.json").write_text(json.dumps({"histograms": {
        "bins": {"0/pooled": [0, 1, 2]}, "units": {"0/pooled/0": {"faces": big}}}}))
    index = build_gallery(run)
    assert "response histogram: none for unit 0/pooled/0" in (
        run / "gallery" / "stage0" / "unit0.html").read_text()
    assert index.is_file() and not (run / ".gallery.tmp").exists()


def test_module_entry_point_builds_or_refuses(tmp_path, capsys):
    from jobs.gallery import main

    run = _visualized(tmp_path / "run")
    assert main([str(run)]) == 0
    assert (run / "gallery" / "index.html").resolve().as_uri() in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_the_run_may_be_named_with_run_as_for_evaluate_and_visualize(tmp_path, capsys):
    from jobs.gallery import main

    run = _visualized(tmp_path / "run")
    assert main(["--run", str(run)]) == 0
    assert (run / "gallery" / "index.html").resolve().as_uri() in capsys.readouterr().out
    for argv in ([], [str(run), "--run", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "give the run folder once" in err and err.count("\n") == 1, err


def test_the_command_is_named_catneuron_gallery(capsys):
    from jobs.gallery import main

    assert main(["/nonexistent/run"]) == 2
    assert capsys.readouterr().err.startswith("catneuron gallery: error: ")
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: catneuron gallery ")


@pytest.mark.parametrize("made, says", [
    ({}, "is not a run folder (no config.toml or model.pt); give one written by 'catneuron "
         "train'"),
    ({"gallery/my_photo_notes.txt": "precious"}, "is not a run folder"),
    ({"config.toml": "", "model.pt": ""}, "has no visualize/index.json; run 'catneuron "
                                          "visualize --run"),
])
def test_the_command_refuses_a_folder_that_is_not_a_visualized_run(tmp_path, capsys, made,
                                                                   says):
    from jobs.gallery import main

    folder = tmp_path / "notarun"
    folder.mkdir()
    for rel, text in made.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    before = {p: p.read_text() for p in folder.rglob("*") if p.is_file()}
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"catneuron gallery: error: {folder} ") and err.count("\n") == 1
    assert says in err
    assert {p: p.read_text() for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(folder.iterdir()) == sorted(folder / p.split("/")[0] for p in made)


def test_the_command_refuses_an_object_store_run(capsys):
    from jobs.gallery import main

    assert main(["s3://bucket/runs/x"]) == 2
    assert "takes a local one; copy the run down first" in capsys.readouterr().err


def test_units_listed_without_detail_get_pages_saying_what_is_missing(tmp_path):
    """visualize lists every stage-0 unit but draws pictures for a few: ``null`` weights, top
    frames, optimal stimulus and invariance."""
    run = make_run(tmp_path)
    path = run / "visualize" / "stage0.json"
    doc = json.loads(path.read_text())
    bare = doc["units"][5]
    for key in ("weights_png", "top_frames", "optimal_stimulus", "invariance"):
        bare[key] = None
    path.write_text(json.dumps(doc))
    build_gallery(run)
    page = _page(run, f"stage0/unit{bare['index']}.html")
    assert "weights: not given" in page and "no top frames listed" in page
    assert "optimal stimulus: not given" in page
    assert "invariance curves: not computed for this unit" in page
    assert f"unit{bare['index']}.html" in _page(run, "stage0.html")


def test_headline_unit_has_its_own_page_whatever_its_layer(run):
    index = _page(run, "index.html")
    assert '<a id="headline" class="button" href="stage1/hidden4.html">stage 1 hidden #4</a>' \
        in index
    hidden, pooled = _page(run, "stage1/hidden4.html"), _page(run, "stage1/unit4.html")
    assert "<h1>Stage 1 hidden unit #4</h1>" in hidden and "The headline unit" in hidden
    assert "<h1>Stage 1 pooled unit #4</h1>" in pooled and "The headline unit" not in pooled
    assert 'src="../../visualize/stage1/hidden4_top0.png"' in hidden
    stage1 = _page(run, "stage1.html")
    assert 'href="stage1/hidden4.html">#4</a> (headline)' in stage1
    assert 'href="stage1/unit4.html">#4</a></td>' in stage1


def _figures(html: str, cls: str, attr: str) -> set[tuple[str, str, str]]:
    pattern = rf'class="[^"]*{cls}[^"]*" {attr}="([^"]*)" data-what="(\w+)">([^<]*)<'
    return {(k, what, text.strip()) for k, what, text in re.findall(pattern, html)}


def test_every_unit_and_set_figure_is_the_same_on_every_page(run):
    shown: dict[tuple[str, str], set[str]] = {}
    pages: dict[str, set[str]] = {}
    for page in (run / "gallery").rglob("*.html"):
        html = page.read_text()
        for cls, attr in (("unitfig", "data-unit"), ("setfig", "data-set")):
            for key, what, text in _figures(html, cls, attr):
                shown.setdefault((key, what), set()).add(text)
                pages.setdefault(key, set()).add(page.name)
    assert {k: v for k, v in shown.items() if len(v) > 1} == {}
    assert shown[("1/hidden/4", "ba")] == {"0.840 ± 0.020"}  # its own figure, with its spread
    assert shown[("1/hidden/4", "auc")] == {"0.860"}  # held-out AUC, not whole-probe 0.880
    assert pages["1/hidden/4"] == {"index.html", "stage1.html", "hidden4.html"}
    assert shown[("best_neuron", "ba")] == {"0.810 ± 0.030"}  # the verdict's figure


def test_every_figure_column_names_its_protocol(run):
    for page in (run / "gallery").rglob("*.html"):
        for head in re.findall(r"<th>([^<]*)</th>", page.read_text()):
            if "accuracy" in head or "AUC" in head:
                assert "held-out" in head or "whole-probe" in head, (page.name, head)


def test_corpus_share_beside_the_headline_units_top_frames(run):
    text = ("<strong>22 %</strong> show a face (base rate: 33 % of all frames); they come from 9 "
            "distinct appearances (a pasted patch's stretch of frames, or a stretch of bare "
            "frames), 2 of them faces, of the corpus's 40 face appearances.")
    assert text in _page(run, "index.html") and text in _page(run, "stage1/hidden4.html")
    assert "show a face" not in _page(run, "stage1/unit4.html")
    assert "frames of one video at least 30 frames apart, near copies last" in _page(
        run, "stage1/unit4.html")


def test_corpus_share_of_an_evaluation_without_appearance_counts():
    """An evaluation.json written before the appearance counts still gives its share."""
    from jobs.gallery.figures import corpus_share, unit_of

    best = {"stage": 1, "layer": "hidden", "index": 4, "corpus_top100_face_share": 0.5,
            "corpus_face_base_rate": 0.33}
    got = corpus_share({"best_neuron": best}, unit_of(best))
    assert got == {"share": 0.5, "base_rate": 0.33, "appearances": None,
                   "face_appearances": None, "corpus_face_appearances": None}


def test_the_protocol_note_names_a_fixed_split_by_its_parts(tmp_path):
    """An evaluation chosen on the tuning part says so, not "over 1 splits"."""
    run = make_run(tmp_path)
    ev = json.loads((run / "evaluation.json").read_text())
    ev["protocol"] = {"n_thresholds": 20, "n_splits": 1, "seed": 0, "choose_on": "tune"}
    (run / "evaluation.json").write_text(json.dumps(ev))
    build_gallery(run)
    page = _page(run, "index.html")
    assert "chosen on the probe's tune part and scored on its other part" in page
    assert "over 1 splits" not in page


def test_the_protocol_note_names_the_random_splits(run):
    assert "mean ± standard deviation over 20 splits" in _page(run, "index.html")
