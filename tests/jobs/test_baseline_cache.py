"""``catneuron evaluate``'s baseline cache: the same evaluation with it or without, keyed by
everything the baselines are computed from, and damaged or foreign files never trusted."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from jobs.evaluate import main
from jobs.report import baseline_cache, evaluation
from jobs.report.baseline_cache import BaselineCache, baseline_key
from tests.jobs.test_evaluate import KINDS, _run_folder

ARGS = ["--filters", "50", "--splits", "3", "--quiet", "--baseline-draws", "2"]


def _drawn(rows: int = 4, seed: int = 0):
    r = np.random.default_rng(seed)
    return ({"linear_filters": r.random((rows, 3)), "random_weights": r.random((rows, 5))},
            {"exemplar_filters": [r.random((rows, 2)), r.random((rows, 2))]})


def _equal(a, b) -> None:
    assert list(a[0]) == list(b[0]) and list(a[1]) == list(b[1])  # the order too
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    for k in a[1]:
        assert len(a[1][k]) == len(b[1][k])
        for x, y in zip(a[1][k], b[1][k], strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_run_evaluated_again_reads_its_baselines_and_scores_the_same(tmp_path, monkeypatch,
                                                                       capsys):
    """Computed once into the cache, read back the second time (nothing drawn again), and the
    evaluation.json is the same byte for byte as with no cache at all."""
    run, cache = _run_folder(tmp_path, KINDS), tmp_path / "cache"
    calls = []
    drawn = evaluation.drawn_baselines
    monkeypatch.setattr(evaluation, "drawn_baselines",
                        lambda *a, **k: calls.append(1) or drawn(*a, **k))
    texts = []
    for extra in (["--baseline-cache", str(cache)], ["--baseline-cache", str(cache)],
                  ["--no-baseline-cache"]):
        assert main(["--run", str(run), *ARGS, *extra]) == 0
        texts.append((run / "evaluation.json").read_text())
    assert len(calls) == 2  # the first run and the one without a cache
    assert texts[0] == texts[1] == texts[2]
    assert len(list(cache.glob("*.npz"))) == 1
    err = capsys.readouterr().err
    assert err.count("baselines read from") == 1 and str(cache) in err
    assert json.loads(texts[1])["baselines"]["exemplar_filters"]["draws"]["n"] == 2


def test_the_key_changes_with_everything_the_baselines_are_computed_from(tmp_path):
    from cluster.state_io import read_trained_stack

    stack, _ = read_trained_stack(_run_folder(tmp_path, KINDS) / "model.pt")
    images = np.zeros((6, 1, 16, 16), np.uint8)
    frames = np.ones((9, 1, 16, 16), np.uint8)
    settings = {"seed": 0, "n_filters": 50, "draws": 5}
    key = baseline_key(stack.config, images, frames, **settings)
    assert key == baseline_key(stack.config, images.copy(), frames.copy(), **settings)
    other_top = replace(stack.config.stages[1], n_maps=7)
    others = [
        baseline_key(replace(stack.config, stages=(stack.config.stages[0], other_top)),
                     images, frames, **settings),
        baseline_key(stack.config, images + 1, frames, **settings),
        baseline_key(stack.config, images, frames[:8], **settings),
        baseline_key(stack.config, images, None, **settings),
        baseline_key(stack.config, images, frames, **{**settings, "seed": 1}),
        baseline_key(stack.config, images, frames, **{**settings, "draws": 4}),
        baseline_key(stack.config, images, frames, **{**settings, "n_filters": 49}),
    ]
    assert len({key, *others}) == len(others) + 1


def test_the_key_changes_with_the_code_and_the_arithmetic_that_compute_them(tmp_path,
                                                                          monkeypatch):
    import torch

    images = frames = np.zeros((2, 1, 4, 4), np.uint8)
    config = _config(tmp_path)
    key = baseline_key(config, images, frames, seed=0)
    assert len(baseline_cache.source_digest()) == 64  # a SHA-256 of the real source
    with monkeypatch.context() as m:
        m.setattr(baseline_cache, "source_digest", lambda: "edited")
        assert baseline_key(config, images, frames, seed=0) != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert baseline_key(config, images, frames, seed=0) != key
    finally:
        torch.set_num_threads(threads)
    assert baseline_key(config, images, frames, seed=0) == key
    monkeypatch.setattr("models.kernels.arithmetic.cpu_model", lambda: "another CPU")
    assert baseline_key(config, images, frames, seed=0) != key


def _config(tmp_path):
    from cluster.state_io import read_trained_stack

    return read_trained_stack(_run_folder(tmp_path, KINDS) / "model.pt")[0].config


def test_tables_round_trip_in_their_order_and_are_computed_once(tmp_path):
    cache, calls = BaselineCache(tmp_path / "c"), []
    first = cache.get("k", 4, lambda: calls.append(1) or _drawn())
    assert cache.status == "written" and cache.path == tmp_path / "c" / "k.npz"
    again = cache.get("k", 4, lambda: calls.append(1) or _drawn(seed=1))
    assert cache.status == "read" and len(calls) == 1
    _equal(first, again)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled", "rows", "names"])
def test_a_damaged_or_foreign_file_is_computed_again_and_written_over(tmp_path, capsys, damage):
    """Nothing in a file is trusted: bytes that are no archive, a cut archive, an object array
    (never unpickled), tables of another probe size or names it would not write are each a
    miss with one warning line, and the file is written over with the computed tables."""
    cache = BaselineCache(tmp_path)
    path = tmp_path / "k.npz"
    cache.get("k", 4, _drawn)
    if damage == "garbage":
        path.write_bytes(b"not an archive")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "pickled":
        np.savez(path, **{"base.x": np.array([{"code": 1}] * 4, dtype=object)})
    elif damage == "rows":
        np.savez(path, **{"base.x": np.zeros((5, 2))})
    else:
        np.savez(path, **{"../x": np.zeros((4, 2))})
    got = cache.get("k", 4, lambda: _drawn(seed=2))
    assert cache.status == "written"
    _equal(got, _drawn(seed=2))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: baseline cache") and "k.npz" in err[0]
    _equal(BaselineCache(tmp_path).get("k", 4, lambda: pytest.fail("read again")),
           _drawn(seed=2))


def test_a_folder_that_cannot_be_written_still_gives_the_tables(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = BaselineCache(blocker / "cache")  # under a file: mkdir fails
    _equal(cache.get("k", 4, _drawn), _drawn())
    assert cache.status == "computed"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: cannot write the baseline cache")


def test_the_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert baseline_cache.default_folder() == tmp_path / "catneuron" / "baselines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert baseline_cache.default_folder() == tmp_path / "home" / ".cache" / "catneuron" / \
        "baselines"


def test_the_test_session_keeps_its_cache_out_of_the_users_home():
    import os
    from pathlib import Path

    assert Path(os.environ["XDG_CACHE_HOME"]).name.startswith("catneuron-test-cache-")
