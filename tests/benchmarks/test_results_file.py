"""benchmarks/results_file.py: what every benchmark prints is what it writes."""

from __future__ import annotations

import json

from tests.benchmarks import load


def test_results_file_prints_and_writes_the_same_json(tmp_path, capsys):
    emit = load("results_file").emit
    out = tmp_path / "deeper" / "r.json"  # its folder is made
    emit({"a": [1, 2], "b": 0.5}, out, indent=2)
    printed = capsys.readouterr().out
    assert json.loads(printed) == {"a": [1, 2], "b": 0.5}
    assert out.read_text() == printed
    emit({"a": 1}, None)  # no file: printed only
    assert json.loads(capsys.readouterr().out) == {"a": 1}
