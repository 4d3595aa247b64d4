"""`catneuron demo`: skip logic on tiny folders, what it prints (progress lines only, the rest in
log files, all of it with --verbose; the verdict in an aligned table), where Ctrl-C stopped it,
and the fast demo end to end (slow)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import pytest
import torch

import jobs.demo as demo_module
from jobs.demo import (
    FAST,
    FULL,
    Demo,
    demo_config_path,
    ingest,
    interrupted,
    main,
    summary,
    train,
)
from jobs.gallery.figures import BASELINES, drawn_label
from jobs.train import where_interrupted
from tests.jobs.conftest import REPO, demo_command, sigint_restored
from tests.jobs.gallery_run import VERDICT_TEXT, write_evaluation

PROGRESS = re.compile(r"\[\d/4\] (ingest|train|evaluate|visualize)( \.\.\.|: .*)$")

def test_refuses_to_mix_a_fast_and_a_full_demo(tmp_path, capsys):
    (tmp_path / "demo.json").write_text(json.dumps({"size": "full"}))
    assert main(["--fast", "--out", str(tmp_path)]) == 2
    assert "made with no --fast" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_train_is_skipped_when_model_holds_every_stage(tmp_path):
    demo = Demo(tmp_path, FULL)
    demo.run.mkdir(parents=True)
    torch.save({"stages_trained": 2}, demo.model)
    assert train(demo).startswith("skipped")


@pytest.mark.parametrize("name", ["{path}", "_videos/{path.name}#0123456789ab"])
def test_ingest_is_skipped_when_every_video_is_in_the_manifest(tmp_path, name):
    from pipeline.demo_corpus import write_demo_videos

    demo = Demo(tmp_path, FAST)
    videos = write_demo_videos(demo.data / "_videos")
    manifest = {"schema_version": 1, "shards": [], "options": {},
                "videos": [{"source": name.format(path=p), "status": "ok"} for p in videos]}
    (demo.data / "_manifest.json").write_text(json.dumps(manifest))
    assert ingest(demo) == f"skipped: all 10 videos in {demo.data}/_manifest.json"


def test_summary_gives_the_verdict_then_an_aligned_table(tmp_path):
    demo = Demo(tmp_path, FAST)
    demo.run.mkdir(parents=True)
    write_evaluation(demo.run)
    text = summary(demo, {"ingest": ("done", 1.0), "train": ("done", 2.0)})
    lines = text.splitlines()
    assert f"verdict: {VERDICT_TEXT}" in lines  # evaluation.json's verdict, as is
    table = lines[lines.index(f"verdict: {VERDICT_TEXT}") + 1:][:7]
    assert table[1].strip().split("  ")[0] == "best unit: stage 1 hidden #4"
    assert "0.810 ± 0.030" in table[1] and table[1].endswith("0.880")
    assert any(row.lstrip().startswith("baseline: best linear filter from training patches")
               for row in table)
    columns = {row.index("0.") for row in table[1:]}
    assert len(columns) == 1 and len({len(row) for row in table[1:]}) == 1  # aligned
    assert (demo.run / "gallery" / "index.html").resolve().as_uri() in text
    assert "total 3.0 s" in text


def test_summary_names_the_arithmetic_the_figures_were_computed_with(tmp_path):
    demo = Demo(tmp_path, FAST)
    demo.run.mkdir(parents=True)
    write_evaluation(demo.run)
    ev = json.loads((demo.run / "evaluation.json").read_text())
    assert "computed with:" not in summary(demo, {})  # an evaluation that does not say
    ev["arithmetic"] = {"cpu": "AMD EPYC", "torch": "2.13.0+cpu", "aten": "AVX2",
                        "numba": "0.68.1 znver3", "pins": "MKL_CBWR=AVX2"}
    (demo.run / "evaluation.json").write_text(json.dumps(ev))
    assert ("computed with: AMD EPYC, torch 2.13.0+cpu AVX2, numba 0.68.1 znver3 (pinned: "
            "MKL_CBWR=AVX2) (figures repeat bit for bit") in summary(demo, {})
    ev["arithmetic"]["aten"] = ["not", "a", "name"]  # a damaged file: no line, no error
    (demo.run / "evaluation.json").write_text(json.dumps(ev))
    assert "computed with:" not in summary(demo, {})


def test_summary_of_an_older_evaluation_says_so(tmp_path):
    demo = Demo(tmp_path, FAST)
    demo.run.mkdir(parents=True)
    write_evaluation(demo.run)
    ev = json.loads((demo.run / "evaluation.json").read_text())
    del ev["verdict"]
    (demo.run / "evaluation.json").write_text(json.dumps(ev))
    text = summary(demo, {"ingest": ("done", 1.0)})
    assert "best face unit: stage 1 hidden #4: beats every baseline" in text
    assert "evaluation.json is from an older version" in text


def _chatty(argv):
    """A step as noisy as train and visualize: a JSON summary on stdout, a line on stderr,
    and a child process writing to the inherited file descriptors."""
    print(json.dumps({"run_dir": "x", "stages": [{"steps": 40}]}, indent=1))
    print("2026-01-01T00:00:00 stage 0: checkpoint", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "print('{\"select units\": 1.5}')"], check=True)
    return 0


@pytest.fixture()
def chatty_steps(monkeypatch):
    """Every demo step runs :func:`_chatty` through the demo's own ``_call``."""
    monkeypatch.setitem(sys.modules, "jobs.chatty", types.SimpleNamespace(main=_chatty))
    monkeypatch.setattr(demo_module, "STEPS", tuple(
        (name, lambda d: demo_module._call(d, "chatty", []) or "done")
        for name in ("ingest", "train", "evaluate", "visualize")))


def test_default_output_is_progress_lines_and_the_rest_goes_to_log_files(tmp_path, capfd,
                                                                         chatty_steps):
    assert main(["--fast", "--out", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    lines = (out + err).splitlines()
    before = lines[:lines.index("== catneuron demo")]
    assert [line for line in before if line and not PROGRESS.match(line)] == []
    log = (tmp_path / "logs" / "chatty.log").read_text()
    assert log.count('"run_dir": "x"') == 4 and log.count('{"select units": 1.5}') == 4
    assert log.count("stage 0: checkpoint") == 4
    assert f"each step's output: {tmp_path / 'logs'}/" in out


def test_verbose_shows_each_steps_output(tmp_path, capfd, chatty_steps):
    assert main(["--fast", "--out", str(tmp_path), "--verbose"]) == 0
    out, err = capfd.readouterr()
    assert out.count('"run_dir": "x"') == 4 and out.count('{"select units": 1.5}') == 4
    assert err.count("stage 0: checkpoint") == 4
    assert not (tmp_path / "logs" / "chatty.log").exists()


def test_a_failed_step_prints_the_end_of_its_log(tmp_path, capfd, monkeypatch):
    def failing(argv):
        print("catneuron train: the dataset has no frames")
        return 2

    monkeypatch.setitem(sys.modules, "jobs.chatty", types.SimpleNamespace(main=failing))
    monkeypatch.setattr(demo_module, "STEPS", (
        ("ingest", lambda d: demo_module._call(d, "chatty", []) or "done"),))
    assert main(["--fast", "--out", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "chatty exited with status 2" in err and str(tmp_path / "logs" / "chatty.log") in err
    assert "catneuron train: the dataset has no frames" in err


def test_interrupted_while_the_next_stage_is_set_up_names_that_stage(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"stage": 0, "step": s, "worker": 0} for s in range(0, 601, 100)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    events = "2026-01-01T00:00:00 stage 0: checkpoint runs/x/checkpoints/stage0/step00000600\n"
    (run / "events.log").write_text(events)
    assert where_interrupted(str(run), 2) == (0, 600)
    (run / "events.log").write_text(events + "2026-01-01T00:00:01 stage 0 done: {'steps': 600}\n")
    assert where_interrupted(str(run), 2) == (1, 0)  # stage 1 was being set up
    assert where_interrupted(str(run), 1) == (0, 600)  # the run had only one stage
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"stage": 1, "step": 20}) + "\n")
    assert where_interrupted(str(run), 2) == (1, 20)


def test_ctrl_c_message_names_the_step_it_stopped_in(tmp_path):
    demo = Demo(tmp_path, FAST)
    assert interrupted(demo) == "interrupted; run the same command again to continue"
    demo.at[:] = ["evaluate"]
    assert interrupted(demo).startswith("interrupted in evaluate;")
    demo.run.mkdir(parents=True)
    (demo.run / "metrics.jsonl").write_text(json.dumps({"stage": 0, "step": 30}) + "\n")
    demo.at[:] = ["train"]
    assert interrupted(demo).startswith("interrupted in train at stage 0 step 30;")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fast_demo_interrupted_continues_and_builds_the_gallery(demo_run):
    assert demo_run.interrupted.returncode == 130, demo_run.interrupted.stdout[-2000:]
    said = re.search(r"catneuron demo: interrupted in train at stage (\d) step (\d+); run the "
                     "same command again", demo_run.interrupted.stdout)
    assert said, demo_run.interrupted.stdout[-2000:]
    out = demo_run.continued.stdout
    assert demo_run.continued.returncode == 0, out[-3000:]
    # only progress lines until the summary: no event lines, JSON or timings in between
    lines = out.splitlines()
    before = lines[:lines.index("== catneuron demo")]
    assert [line for line in before if line and not PROGRESS.match(line)] == [], out[-3000:]
    assert '"run_dir"' in (demo_run.out / "logs" / "train.log").read_text()
    assert "[1/4] ingest: skipped" in out
    events = (demo_run.out / "train" / "events.log").read_text()  # both runs, appended
    stage, step = int(said[1]), int(said[2])
    if stage == 0:
        assert f"stage 0: resuming from {demo_run.out / 'train' / 'checkpoints' / 'stage0'}" \
            in events, events[-3000:]
    else:  # stopped after stage 0 was saved: the second run starts at the stage it stopped in
        assert f"resume: stages 0..{stage - 1} already trained" in events, events[-3000:]
        assert step == 0 or f"stage {stage}: resuming from" in events, events[-3000:]
    assert events.count("stage 0: fitted its whitening") == 1, events[-3000:]  # not redone
    index = demo_run.out / "train" / "gallery" / "index.html"
    assert index.is_file()
    assert f"gallery: {index}" in out and index.resolve().as_uri() in out


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fast_demo_rerun_skips_every_step(demo_run):
    again = subprocess.run(demo_command(demo_run.out), cwd=REPO, text=True, timeout=300,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert again.returncode == 0, again.stdout[-2000:]
    for step in ("ingest", "train", "evaluate", "visualize"):
        assert ": skipped" in next(line for line in again.stdout.splitlines()
                                    if line.startswith("[") and f"] {step}: " in line)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fast_demo_summary_gives_the_verdict_then_the_baselines(demo_run):
    """What the finished demo printed after its progress lines: ``evaluation.json``'s verdict as
    written, then a row for the best unit and one for every baseline the file scores, each with
    its held-out balanced accuracy."""
    run = demo_run.out / "train"
    evaluation = json.loads((run / "evaluation.json").read_text())
    lines = demo_run.continued.stdout.splitlines()
    after = lines[lines.index("== catneuron demo") + 1:]
    assert after[0] == f"verdict: {evaluation['verdict']['text']}", after[:3]
    rows = {re.split(r"\s{2,}", line.strip())[0]: line for line in after[2:]
            if line.startswith("  ")}
    best = evaluation["best_neuron"]
    best_row = next(line for name, line in rows.items() if name.startswith("best unit: stage "))
    assert f"{best['heldout_balanced_accuracy']:.3f}" in best_row
    scored = {k: v for k, v in evaluation["baselines"].items() if isinstance(v, dict)}
    assert "best_pixel" in scored
    for key, s in scored.items():
        row = rows[f"baseline: {BASELINES.get(key, key)}{drawn_label(s)}"]
        assert f"{s['heldout_balanced_accuracy']:.3f}" in row, (key, row)
    assert (run / "visualize" / "index.json").is_file()
    assert (run / "gallery" / "stage0.html").is_file()


def test_train_starts_with_the_demo_config_then_continues_the_run(tmp_path):
    demo = Demo(tmp_path, FAST)
    start = demo.train_argv()
    assert start[:2] == ["--config", str(demo_config_path())] and "--resume" not in start
    assert "--train.steps=40" in start
    demo.run.mkdir(parents=True)
    (demo.run / "config.toml").write_text("")
    assert demo.train_argv() == ["--resume", "--run-dir", str(demo.run.resolve())]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_while_stage_1_is_set_up_names_stage_1(tmp_path):
    """SIGINT (Ctrl-C) as soon as stage 0 is done, while stage 1's actors start: the demo must
    name stage 1, not stage 0's last logged step."""
    proc = subprocess.Popen(demo_command(tmp_path), cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=sigint_restored)
    events = tmp_path / "train" / "events.log"
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and not (
            events.is_file() and "stage 0 done: " in events.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:]
    said = re.search(r"interrupted in train at stage (\d) step (\d+);", out)
    assert said and said.group(1) == "1", out[-2000:]


def test_an_out_that_is_a_file_is_one_line_and_left_alone(tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("hi")
    assert demo_module.main(["--fast", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.count("\n") == 1
    assert out.read_text() == "hi"


@pytest.mark.parametrize("where", ["file_above", "proc"])
def test_an_out_that_cannot_be_made_is_one_line(tmp_path, capsys, where):
    above = tmp_path / "afile"
    above.write_text("hi")
    out = above / "demo" if where == "file_above" else "/proc/catneuron-demo"
    assert demo_module.main(["--fast", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"catneuron demo: error: --out {out}: ") and err.count("\n") == 1
    assert above.read_text() == "hi"


def test_a_second_demo_into_one_folder_is_refused_at_once(tmp_path, capsys):
    """Two demos into one --out: the second's visualize removed the first's half-written
    visualize.partial (a traceback in the first); now the second stops before any step."""
    import fcntl

    out = tmp_path / "demo"
    out.mkdir()
    with open(out / "demo.lock", "w") as held:  # as a running demo holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert demo_module.main(["--fast", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "another catneuron demo" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["demo.lock"]


@pytest.mark.parametrize("text", ["", "{", "[]", '{"size": "huge"}'])
@pytest.mark.parametrize("fast", [True, False])
def test_a_damaged_demo_json_is_named_not_taken_for_the_other_size(tmp_path, capsys, text,
                                                                    fast):
    (tmp_path / "demo.json").write_text(text)
    assert demo_module.main(["--fast"] * fast + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'demo.json'} is damaged" in err and err.count("\n") == 1
    assert "made with" not in err
    assert (tmp_path / "demo.json").read_text() == text


@pytest.mark.parametrize("change, current", [
    (lambda ev: ev, True),
    (lambda ev: ev.pop("verdict"), False),  # from an older version
    (lambda ev: ev["baselines"]["exemplar_filters"].pop("draws"), False),  # one draw, not two
    (None, False),  # damaged
    (lambda ev: ev.update(baselines=[]), False),  # JSON of another shape
    (lambda ev: ev["baselines"].update(exemplar_filters={"draws": {"n": "two"}}), False),
])
def test_evaluate_is_skipped_only_for_a_newer_evaluation_scored_as_this_demo_scores(
        tmp_path, monkeypatch, change, current):
    """The fast demo asks for 2 exemplar draws: an evaluation.json newer than model.pt is kept
    only when it has a verdict and that many draws; otherwise evaluate runs again."""
    demo = Demo(tmp_path, FAST)
    demo.run.mkdir(parents=True)
    torch.save({"stages_trained": 2}, demo.model)
    write_evaluation(demo.run)
    path = demo.run / "evaluation.json"
    ev = json.loads(path.read_text())
    ev["baselines"]["exemplar_filters"] = {"draws": {"n": 2}}
    if change is None:
        path.write_text("{not json")
    else:
        change(ev)
        path.write_text(json.dumps(ev))
    model_time = demo.model.stat().st_mtime
    os.utime(path, (model_time + 5, model_time + 5))
    calls = []
    monkeypatch.setattr(demo_module, "_call", lambda d, job, argv: calls.append((job, argv)))
    said = demo_module.evaluate(demo)
    if current:
        assert said.startswith("skipped") and calls == []
    else:
        assert said == "done" and calls == [("evaluate", ["--run", str(demo.run), "--splits", "5",
                                                          "--filters", "200",
                                                          "--baseline-draws", "2"])]
