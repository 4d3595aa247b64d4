"""End-to-end `catneuron ingest` runs on real files: bad inputs, exit codes, resume."""

from __future__ import annotations

import json
import shutil

import cv2
import pyarrow.dataset as pads
import pytest

from jobs.ingest import main
from pipeline.reader import read_frames
from pipeline.shards import sha256_file
from tests.pipeline.conftest import cv2_frames, make_video


def _manifest(out):
    return json.loads((out / "_manifest.json").read_text())


def _key(folder, path):
    """A local video's source key: its path under the folder given + its content hash."""
    return f"{folder}/{path.name}#{sha256_file(path)[:12]}"


def _rows(out):
    t = pads.dataset(str(out), format="parquet").to_table()
    return list(zip(t.column("source").to_pylist(), t.column("frame_index").to_pylist(),
                    t.column("pixels").to_pylist(), strict=True))


@pytest.mark.slow
def test_bad_inputs_in_one_run_keep_every_good_frame(tmp_path, http_dir, closed_port_url,
                                                     ray_cluster, capsys):
    www, base = http_dir
    src = tmp_path / "src"
    src.mkdir()
    good = [make_video(src / "good1.mp4", n_frames=40, seed=1),
            make_video(src / "good2.avi", n_frames=25, fourcc="MJPG", seed=2)]
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    whole = make_video(tmp_path / "whole.mp4", n_frames=60, seed=3).read_bytes()
    (src / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # MP4 cut before its index
    broken = make_video(tmp_path / "broken.avi", n_frames=60, fourcc="MJPG", seed=4)
    (src / "broken.avi").write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    served = make_video(www / "remote.mp4", n_frames=30, seed=5)
    (www / "page.html").write_text("<html><body>no video here</body></html>")
    out = tmp_path / "data"
    code = main([str(src), f"{base}/remote.mp4", closed_port_url, f"{base}/page.html",
                 "--out", str(out), "--input-size", "0", "--shard-rows", "16", "--workers", "2",
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sources ok: 4, failed: 5" in printed
    videos = {v["source"].split("#")[0].rsplit("/", 1)[-1]: v for v in _manifest(out)["videos"]}
    assert videos["empty.mp4"]["status"] == "failed"
    assert "empty file (0 bytes)" in videos["empty.mp4"]["error"]
    assert "not a video" in videos["notes.mp4"]["error"]
    assert "truncated" in videos["truncated.mp4"]["error"]
    assert videos["broken.avi"]["status"] == "ok"
    assert "stream ended" in videos["broken.avi"]["error"]
    assert videos["missing.mp4"]["status"] == "failed"
    assert "could not fetch" in videos["missing.mp4"]["error"]
    assert "Unsupported URL" in videos["page.html"]["error"]
    # every frame of every good source, exactly once, equal to cv2's
    rows = _rows(out)
    keys = [(s, i) for s, i, _ in rows]
    assert len(keys) == len(set(keys))
    by_key = {(s, i): p for s, i, p in rows}
    for path, source in [(good[0], _key("src", good[0])), (good[1], _key("src", good[1])),
                         (served, f"{base}/remote.mp4")]:
        ref = cv2_frames(path)
        assert sum(1 for s, _ in keys if s == source) == len(ref)
        for i in (0, len(ref) - 1):
            assert by_key[(source, i)] == cv2.cvtColor(ref[i], cv2.COLOR_BGR2GRAY).tobytes()
    assert videos["broken.avi"]["frames"] == sum(1 for s, _ in keys if "broken.avi#" in s)


def test_exit_codes(tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    out = tmp_path / "data"
    assert main([str(tmp_path / "empty.mp4"), "--out", str(out), "--workers", "0",
                 "--quiet"]) == 1
    assert "no source gave any frame" in capsys.readouterr().err
    assert main(["--out", str(out)]) == 2  # no source
    assert main([str(tmp_path), "--out", str(out), "--every", "0"]) == 2
    assert main([str(tmp_path), "--out", str(out), "--bogus"]) == 2
    assert main(["--help"]) == 0
    (tmp_path / "file").write_text("x")
    assert main([str(tmp_path), "--out", str(tmp_path / "file")]) == 2


def test_rerun_skips_done_videos_and_refuses_other_options(tmp_path, capsys):
    v1 = make_video(tmp_path / "a.mp4", n_frames=20)
    out = tmp_path / "data"
    args = [str(v1), "--out", str(out), "--input-size", "16", "--workers", "0", "--quiet"]
    assert main(args) == 0
    first = _manifest(out)
    before = read_frames(out)
    v2 = make_video(tmp_path / "b.mp4", n_frames=10, seed=9)
    assert main(args[:1] + [str(v2)] + args[1:]) == 0  # extends: a skipped, b added
    printed = capsys.readouterr().out
    assert "already ingested" in printed
    second = _manifest(out)
    assert second["shards"][: len(first["shards"])] == first["shards"]
    after = read_frames(out)
    assert len(after) == 30 and (after[:20] == before).all()
    code = main([str(v1), "--out", str(out), "--input-size", "32", "--workers", "0"])
    assert code == 2
    assert "size=16" in capsys.readouterr().err


def test_a_schema_1_dataset_is_extended_under_its_old_option_names(tmp_path, capsys):
    v1 = make_video(tmp_path / "a.mp4", n_frames=20)
    out = tmp_path / "data"
    args = [str(v1), "--out", str(out), "--input-size", "16", "--colour", "--workers", "0",
            "--quiet"]
    assert main(args) == 0
    m = _manifest(out)
    o = m["options"]  # what an older catneuron wrote
    m["schema_version"], m["options"] = 1, {
        "every": o["every"], "max_frames": o["max_frames"], "size": 16, "grey": False,
        "interpolation": o["interpolation"], "shard_rows": o["max_rows"],
        "shard_bytes": o["max_bytes"]}
    (out / "_manifest.json").write_text(json.dumps(m))
    v2 = make_video(tmp_path / "b.mp4", n_frames=10, seed=9)
    assert main(args[:1] + [str(v2)] + args[1:]) == 0  # a skipped, b added
    assert "already ingested" in capsys.readouterr().out
    upgraded = _manifest(out)
    assert upgraded["schema_version"] == 2 and upgraded["options"] == o
    assert len(read_frames(out)) == 30
    assert main([str(v1), "--out", str(out), "--input-size", "16", "--workers", "0"]) == 2
    assert "channels=3" in capsys.readouterr().err  # grey asked, the dataset is colour


def test_demo_ingest(tmp_path, ray_cluster):
    out = tmp_path / "demo"
    assert main(["--demo", "--out", str(out), "--quiet"]) == 0
    m = _manifest(out)
    assert len(m["videos"]) == 10 and all(v["status"] == "ok" for v in m["videos"])
    x = read_frames(out)
    assert x.shape == (3000, 1, 64, 64) and x.dtype.name == "uint8"
    assert all(s["rows"] == 100 for s in m["shards"])
    shutil.rmtree(out / "_videos")  # the dataset stands on its own
    assert read_frames(out, limit=5).shape == (5, 1, 64, 64)
