"""benchmarks/results_file.py: what every benchmark prints is what it writes."""

from __future__ import annotations

import json

from tests.benchmarks import load


def _strict(text: str):
    """JSON as a strict reader sees it: NaN and Infinity refused."""
    def refuse(word):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def test_results_file_prints_and_writes_the_same_json(tmp_path, capsys):
    emit = load("results_file").emit
    out = tmp_path / "deeper" / "r.json"  # its folder is made
    emit({"a": [1, 2], "b": 0.5}, out, indent=2)
    printed = capsys.readouterr().out
    doc = _strict(printed)
    assert (doc["a"], doc["b"]) == ([1, 2], 0.5)
    assert out.read_text() == printed
    emit({"a": 1}, None)  # no file: printed only
    assert _strict(capsys.readouterr().out)["a"] == 1


def test_every_result_records_its_command_and_machine_unless_it_did(capsys):
    emit = load("results_file").emit
    emit({"a": 1}, None)
    doc = _strict(capsys.readouterr().out)
    assert doc["command"].startswith("python ") and doc["machine"]["cpus"] >= 1
    emit({"command": "python benchmarks/x.py --y", "machine": {"gpu": "H100"}}, None)
    doc = _strict(capsys.readouterr().out)
    assert doc["command"] == "python benchmarks/x.py --y" and doc["machine"] == {"gpu": "H100"}


def test_non_finite_figures_are_written_as_null_and_named(tmp_path, capsys):
    emit = load("results_file").emit
    out = tmp_path / "r.json"
    emit({"ok": 1.5, "ratio": float("nan"), "rows": [{"best_s": float("inf")}]}, out)
    captured = capsys.readouterr()
    doc = _strict(out.read_text())
    assert (doc["ok"], doc["ratio"], doc["rows"]) == (1.5, None, [{"best_s": None}])
    assert "ratio" in captured.err and "rows[0].best_s" in captured.err
