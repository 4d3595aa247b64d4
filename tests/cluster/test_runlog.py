"""The run logger's files and the per-stage progress bar."""

from __future__ import annotations

import io

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cluster.runlog import RunLogger, load_metrics, read_metrics, show_recon_error, stage_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_worker_has_its_own_tensorboard_curves(tmp_path):
    log = RunLogger(tmp_path, echo=None)
    for step in (1, 2):
        for worker in (0, 1):
            log.metrics({"stage": 0, "step": step, "worker": worker,
                         "recon_error": 0.5 + worker, "staleness_mean": 1.0})
        log.metrics({"stage": 0, "step": step, "recon_error": 1.0})  # the stage's mean
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"stage0/worker0/recon_error", "stage0/worker1/recon_error", "stage0/recon_error",
            "stage0/worker1/staleness_mean"} <= tags
    assert [e.value for e in events.Scalars("stage0/worker1/recon_error")] == [1.5, 1.5]
    assert [e.value for e in events.Scalars("stage0/recon_error")] == [1.0, 1.0]
    assert len(read_metrics(tmp_path)) == 6


def test_metrics_reader_skips_what_is_not_a_record(tmp_path):
    """A line cut short by a kill, a non-object and a record without a step are counted, not
    returned; a missing file is no records."""
    assert load_metrics(tmp_path) == load_metrics(tmp_path / "none")
    assert not load_metrics(tmp_path).found
    lines = ['{"stage": 0, "step": 1, "recon_error": 0.5}', "", "[1, 2]", '{"stage": 0}',
             '{"stage": 1, "step": 2}', '{"stage": 1, "st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    log = load_metrics(tmp_path)
    assert log.found and log.skipped == 3
    assert [(r["stage"], r["step"]) for r in log.records] == [(0, 1), (1, 2)]


def test_progress_bar_shows_steps_and_error_on_a_terminal_only():
    screen = _Terminal()
    with stage_progress(1, 10, initial=2, file=screen) as bar:
        bar.update(4)
        show_recon_error(bar, {"recon_error": 0.25})
        show_recon_error(bar, {"fe_gap": 3.0})  # no error in this record: the last one stays
        bar.refresh()
    text = screen.getvalue()
    assert "stage 1" in text and "6/10" in text and "step/s" in text
    assert "recon_error=0.2500" in text

    pipe = io.StringIO()  # not a terminal: silent
    with stage_progress(1, 10, file=pipe) as bar:
        bar.update(10)
        show_recon_error(bar, {"recon_error": 0.25})
    assert pipe.getvalue() == ""
