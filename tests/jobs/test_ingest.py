"""``catneuron ingest``: its settings are the job config's ``[ingest]`` section."""

from __future__ import annotations

import pytest

from jobs.config import load
from jobs.ingest import RESOLVED, build_parser, main, resolve
from tests.pipeline.conftest import make_video


def _resolve(argv):
    args, rest = build_parser().parse_known_args(argv)
    return resolve(args, rest).ingest


def test_demo_reads_the_shipped_demo_configs_ingest_section():
    demo = _resolve(["--demo", "--out", "x"])
    assert demo == load("demo").ingest
    assert (demo.decode.input_size, demo.decode.channels, demo.shards.max_rows) == (64, 1, 100)
    plain = _resolve(["a.mp4", "--out", "x"])  # no --config: the library defaults
    assert plain == load(None).ingest and plain.shards.max_rows == 4096


def test_flags_and_overrides_set_the_same_keys():
    got = _resolve(["a.mp4", "--out", "x", "--input-size", "32", "--colour", "--shard-mb", "2",
                    "--ingest.decode.every=3", "--ingest.decode.input_size=32"])
    assert (got.decode.input_size, got.decode.channels, got.decode.every) == (32, 3, 3)
    assert got.shards.max_bytes == 2 << 20
    disagree = "--input-size 32 and --ingest.decode.input_size=48 disagree"
    with pytest.raises(ValueError, match=disagree):
        _resolve(["a.mp4", "--out", "x", "--input-size", "32", "--ingest.decode.input_size=48"])


def test_bad_values_are_one_line_exit_2(tmp_path, capsys):
    assert main(["a.mp4", "--out", str(tmp_path), "--ingest.decode.every=0"]) == 2
    err = capsys.readouterr().err
    assert "ingest.decode" in err and "every=0" in err and err.count("\n") == 1
    assert main(["a.mp4", "--out", str(tmp_path), "--ingest.decode.nope=1"]) == 2
    assert "unknown key ingest.decode.nope" in capsys.readouterr().err


def test_the_resolved_config_is_saved_beside_the_dataset(tmp_path):
    video = make_video(tmp_path / "v.mp4", n_frames=12)
    out = tmp_path / "data"
    assert main([str(video), "--out", str(out), "--workers", "0", "--quiet",
                 "--ingest.decode.input_size=16", "--shard-rows", "5"]) == 0
    saved = load(out / RESOLVED)
    assert (saved.ingest.decode.input_size, saved.ingest.shards.max_rows) == (16, 5)


@pytest.mark.parametrize("flags", [["--max-filesize-mb", "inf"], ["--shard-mb", "nan"],
                                   ["--shard-mb", "-1"], ["--max-videos", "-3"],
                                   ["--max-duration", "-1"], ["--max-filesize-mb", "0"]],
                         ids=" ".join)
def test_sizes_and_bounds_that_are_not_positive_are_one_line_naming_them(tmp_path, capsys,
                                                                         flags):
    out = tmp_path / "data"
    assert main(["a.mp4", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    name = flags[0].lstrip("-").replace("-", "_").removesuffix("_mb")
    assert err.count("\n") == 1 and (flags[0] in err or name in err), err
    assert not out.exists()
