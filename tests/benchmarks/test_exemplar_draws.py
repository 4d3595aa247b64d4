"""benchmarks/exemplar_draws.py draws the exemplar network the evaluation scores."""

from __future__ import annotations

from tests.benchmarks import load


def test_exemplar_draws_rebuilds_the_exemplar_network_the_evaluation_scores(tmp_path):
    """benchmarks/exemplar_draws.py repeats baseline_tables' draws in their order: its
    exemplar network's top units answer a set of frames exactly as the evaluation's do."""
    import numpy as np

    from jobs.evaluate import load_run
    from jobs.report.evaluation import baseline_tables, top_stage_tables
    from pipeline.reader import read_frames
    from tests.jobs.test_evaluate import _run_folder

    cfg, stack = load_run(_run_folder(tmp_path))
    frames = read_frames(cfg.data.path, limit=64)
    images = frames[:12]
    tables = {"0/pooled": np.zeros((len(images), 1))}
    for seed in (0, 3):
        evaluated = baseline_tables(stack, images, frames, 1000, seed, tables)[0]
        rebuilt = load("exemplar_draws").exemplar_stack(stack, frames, seed)
        assert np.array_equal(top_stage_tables([rebuilt], images)[0],
                              evaluated["exemplar_filters"])
