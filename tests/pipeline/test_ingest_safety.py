"""What an ingest may touch: only its own folder, one copy of each source's frames, and it says
what it skipped. Real files, in-process decoding (``--workers 0``)."""

from __future__ import annotations

import json
import shutil

import pytest

from jobs.ingest import main
from pipeline.reader import read_frames
from tests.pipeline.conftest import make_video


def _manifest(out):
    return json.loads((out / "_manifest.json").read_text())


def _ingest(sources, out, *extra):
    return main([*map(str, sources), "--out", str(out), "--input-size", "16", "--workers", "0",
                 "--quiet", *extra])


@pytest.mark.parametrize("evil", ["../victim.txt", "ABSOLUTE"])
def test_a_manifest_path_outside_the_dataset_is_refused_and_nothing_is_touched(
        tmp_path, capsys, evil):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil = str(victim) if evil == "ABSOLUTE" else evil
    video = make_video(tmp_path / "a.mp4", n_frames=8)
    out = tmp_path / "data"
    assert _ingest([video], out) == 0
    manifest = _manifest(out)
    manifest["videos"].append({"source": "x.mp4", "status": "failed", "frames": 0,
                               "error": "crafted", "shards": [evil]})
    (out / "_manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in out.iterdir())
    (out / "x.mp4").write_bytes(video.read_bytes())
    capsys.readouterr()
    assert _ingest([out / "x.mp4", video], out) == 2
    err = capsys.readouterr().err
    assert "not a plain file name inside" in err and err.count("\n") == 1
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == sorted(before + ["x.mp4"])
    assert _manifest(out) == manifest


@pytest.mark.parametrize("damage", ["bare shard name", "video without status",
                                    "shard without rows", "video shards not a list",
                                    "shard listed twice", "committed shard unlisted",
                                    "options not a mapping"])
def test_a_manifest_record_without_its_fields_is_one_line_and_nothing_is_touched(
        tmp_path, capsys, damage):
    video = make_video(tmp_path / "a.mp4", n_frames=8)
    out = tmp_path / "data"
    assert _ingest([video], out) == 0
    manifest = _manifest(out)
    if damage == "bare shard name":
        manifest["shards"][0] = manifest["shards"][0]["path"]
    elif damage == "video without status":
        del manifest["videos"][0]["status"]
    elif damage == "video shards not a list":
        manifest["videos"][0]["shards"] = None
    elif damage == "shard listed twice":
        manifest["shards"].append(dict(manifest["shards"][0]))
    elif damage == "committed shard unlisted":  # a resumed ingest would delete it as an orphan
        manifest["shards"] = manifest["shards"][1:]
    elif damage == "options not a mapping":
        manifest["options"] = "box"
    else:
        del manifest["shards"][0]["rows"]
    (out / "_manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert _ingest([make_video(tmp_path / "b.mp4", n_frames=8, seed=1)], out) == 2
    err = capsys.readouterr().err
    assert "the manifest was edited or damaged" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == before and _manifest(out) == manifest


def test_a_moved_or_copied_dataset_keeps_one_copy_of_each_frame(tmp_path, capsys):
    src = tmp_path / "project" / "clips"
    src.mkdir(parents=True)
    for i in range(2):
        make_video(src / f"v{i}.mp4", n_frames=10, seed=i)
    assert _ingest([src], tmp_path / "project" / "data") == 0
    n = len(read_frames(tmp_path / "project" / "data"))
    assert n == 20
    # move the whole project, copy the dataset, and run the same command again in both places
    shutil.move(tmp_path / "project", tmp_path / "moved")
    shutil.copytree(tmp_path / "moved" / "data", tmp_path / "copy")
    capsys.readouterr()
    for out in (tmp_path / "moved" / "data", tmp_path / "copy"):
        assert _ingest([tmp_path / "moved" / "clips"], out) == 0
        printed = capsys.readouterr().out
        assert "skipped (done before): 2" in printed and "dataset: 20 frames" in printed
        assert len(read_frames(out)) == n
    # the same video under another name is the same source: not committed twice
    shutil.copy(tmp_path / "moved" / "clips" / "v0.mp4", tmp_path / "renamed.mp4")
    assert _ingest([tmp_path / "renamed.mp4"], tmp_path / "copy") == 0
    assert len(read_frames(tmp_path / "copy")) == n
    keys = [v["source"] for v in _manifest(tmp_path / "copy")["videos"]]
    assert sorted(k.split("#")[0] for k in keys) == ["clips/v0.mp4", "clips/v1.mp4"]


def test_symlinked_subfolders_are_reported_not_silently_skipped(tmp_path, capsys):
    src = tmp_path / "clips"
    src.mkdir()
    make_video(src / "a.mp4", n_frames=6)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_video(elsewhere / "b.mp4", n_frames=6, seed=3)
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert _ingest([src], tmp_path / "data") == 0
    printed = capsys.readouterr().out
    assert "clips/linked: symlinked folder, not followed" in printed
    assert "symlinked folders not followed: 1" in printed
    assert len(read_frames(tmp_path / "data")) == 6


def test_demo_refuses_a_symlinked_videos_folder(tmp_path, capsys):
    target = tmp_path / "target"
    target.mkdir()
    out = tmp_path / "data"
    out.mkdir()
    (out / "_videos").symlink_to(target, target_is_directory=True)
    assert main(["--demo", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "_videos is a symlink" in err and err.count("\n") == 1
    assert list(target.iterdir()) == []


def test_out_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "somefile").write_text("x")
    video = make_video(tmp_path / "a.mp4", n_frames=4)
    assert _ingest([video], tmp_path / "somefile" / "sub") == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.count("\n") == 1


def test_ctrl_c_exits_130_and_keeps_finished_videos(tmp_path, capsys, monkeypatch):
    from pipeline import ingest as ingest_module

    real = ingest_module.ingest_video
    calls = []

    def interrupted_on_the_second(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(ingest_module, "ingest_video", interrupted_on_the_second)
    videos = [make_video(tmp_path / f"v{i}.mp4", n_frames=5, seed=i) for i in range(3)]
    out = tmp_path / "data"
    assert _ingest(videos, out) == 130
    err = capsys.readouterr().err
    assert err.startswith("catneuron ingest: interrupted;") and err.count("\n") == 1
    assert [v["status"] for v in _manifest(out)["videos"]] == ["ok"]


def _own_orphan_shards(out, prefix="killed"):
    """Shards catneuron wrote for a video it never committed (as a killed run leaves them)."""
    import numpy as np

    from pipeline.shards import ShardWriter

    frames = np.zeros((5, 16, 16, 1), np.uint8)
    with ShardWriter(out, prefix, max_rows=2) as w:
        w.write("gone.mp4", frames, np.arange(5), np.zeros(5))
        return [s.path for s in w.finalize()]


def test_a_folder_of_only_catneuron_shards_and_no_manifest_resumes(tmp_path, capsys):
    out = tmp_path / "data"
    orphans = _own_orphan_shards(out)
    (out / "._manifest.json.tmp").write_text('{"half": ')  # killed while publishing it
    video = make_video(tmp_path / "a.mp4", n_frames=6)
    assert _ingest([video], out) == 0
    printed = capsys.readouterr().out
    assert f"removed {len(orphans) + 1} file(s) an interrupted run left uncommitted" in printed
    listed = {s["path"] for s in _manifest(out)["shards"]}
    assert {p.name for p in out.glob("*.parquet")} == listed and not listed & set(orphans)
    assert not list(out.glob(".*")) and len(read_frames(out)) == 6


@pytest.mark.parametrize("name, with_manifest", [
    ("notes.txt", False), ("data.parquet", False), ("looks-00000.parquet", False),
    ("extra.parquet", True), ("looks-00000.parquet", True)])
def test_a_folder_with_foreign_files_is_refused_and_left_as_it_was(tmp_path, capsys, name,
                                                                    with_manifest):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "data"
    video = make_video(tmp_path / "a.mp4", n_frames=4)
    if with_manifest:
        assert _ingest([video], out) == 0
    else:
        _own_orphan_shards(out)
    foreign = out / name
    if name.endswith(".parquet"):  # Parquet, named like a shard or not, not a frame table
        pq.write_table(pa.table({"source": ["x"], "frame_index": [0]}), foreign)
    else:
        foreign.write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert _ingest([video, make_video(tmp_path / "b.mp4", n_frames=4, seed=1)], out) == 2
    err = capsys.readouterr().err
    assert "catneuron did not write" in err and name in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_copied_video_is_reported_as_a_duplicate_of_the_first(tmp_path, capsys):
    src = tmp_path / "clips"
    src.mkdir()
    make_video(src / "a.mp4", n_frames=5)
    make_video(src / "b.mp4", n_frames=5, seed=1)
    shutil.copy(src / "a.mp4", src / "c_copy.mp4")
    assert _ingest([src], tmp_path / "data") == 0
    printed = capsys.readouterr().out
    assert "sources ok: 2, failed: 0, skipped (done before): 0, duplicates: 1" in printed
    assert "clips/c_copy.mp4  (same content as clips/a.mp4)" in printed
    assert len(read_frames(tmp_path / "data")) == 10


def test_demo_into_a_dataset_of_other_options_writes_nothing(tmp_path, capsys):
    out = tmp_path / "data"
    assert _ingest([make_video(tmp_path / "a.mp4", n_frames=4)], out) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["--demo", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "input_size=16" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == before  # no _videos/


def test_an_object_store_datasets_downloads_stay_in_this_users_own_folder(tmp_path,
                                                                          monkeypatch):
    """The downloads of an ``s3://`` dataset go to a folder of this user's, closed to others;
    one that another user could write to is refused with one line."""
    import os

    from pipeline.ingest import downloads_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    path = downloads_dir("s3://bucket/data")
    assert path.parent == tmp_path / f"catneuron-downloads-{os.getuid()}"
    assert path.parent.stat().st_mode & 0o777 == 0o700 and not path.exists()
    path.parent.chmod(0o777)
    with pytest.raises(ValueError, match="closed to others"):
        downloads_dir("s3://bucket/data")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_a_source_that_cannot_be_read_is_failed_and_the_others_are_kept(tmp_path, capsys):
    """A file whose bytes cannot be read (permission denied, an I/O error: /proc/self/mem gives
    EIO even to root) is recorded as failed with the reason; the ingest goes on."""
    video = make_video(tmp_path / "a.mp4", n_frames=4)
    out = tmp_path / "data"
    assert _ingest(["/proc/self/mem", video], out) == 0
    printed = capsys.readouterr().out
    assert "cannot read the file" in printed and "sources ok: 1, failed: 1" in printed
    assert [v["status"] for v in _manifest(out)["videos"]] == ["failed", "ok"]
    assert len(read_frames(out)) == 4


def test_a_manifest_record_naming_other_files_of_the_folder_deletes_none_of_them(tmp_path):
    """A failed video's record edited to list files of the folder as its shards: re-ingesting
    the video replaces the record but deletes only catneuron's shards, never the user's file
    or the dataset's own config."""
    from pipeline.shards import sha256_file

    out = tmp_path / "data"
    assert _ingest([make_video(tmp_path / "a.mp4", n_frames=4)], out) == 0
    (out / "notes.txt").write_text("mine")
    video = make_video(tmp_path / "c.mp4", n_frames=3, seed=2)
    manifest = _manifest(out)
    manifest["videos"].append({"source": f"c.mp4#{sha256_file(video)[:12]}", "status": "failed",
                               "frames": 0, "error": "edited", "shards": ["notes.txt"]})
    (out / "_manifest.json").write_text(json.dumps(manifest))
    assert _ingest([video], out) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert len(read_frames(out)) == 7
