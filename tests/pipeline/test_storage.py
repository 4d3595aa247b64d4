"""Locations as paths or URIs: the same operations on the local disk and on a real
S3-compatible server (moto, on 127.0.0.1)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline import storage


@pytest.fixture(params=["local", "s3"])
def folder(request, tmp_path):
    """A fresh, empty folder: a local path, or a prefix in the test bucket."""
    if request.param == "local":
        return str(tmp_path / "f")
    request.getfixturevalue("s3_store")
    return f"s3://catneuron/{uuid.uuid4().hex}"


def test_write_read_list_delete(folder):
    assert storage.list_files(folder) == []
    assert not storage.exists(storage.join(folder, "a.bin"))
    storage.write_bytes(storage.join(folder, "a.bin"), b"\x00\x01")
    storage.write_text(storage.join(folder, "sub", "b.txt"), "hé")
    assert storage.read_bytes(storage.join(folder, "a.bin")) == b"\x00\x01"
    assert storage.read_text(storage.join(folder, "sub", "b.txt")) == "hé"
    assert storage.list_files(folder) == ["a.bin"]  # files directly inside, no temporaries
    storage.write_bytes(storage.join(folder, "a.bin"), b"new")  # replaced whole
    assert storage.read_bytes(storage.join(folder, "a.bin")) == b"new"
    storage.delete(storage.join(folder, "a.bin"))
    storage.delete(storage.join(folder, "a.bin"))  # already gone: fine
    assert storage.list_files(folder) == []
    with pytest.raises(FileNotFoundError, match="a.bin"):
        storage.read_bytes(storage.join(folder, "a.bin"))


def test_publish_file_moves_a_finished_file(folder, tmp_path):
    staging = storage.staging_dir(folder)
    staged = staging / ".x.tmp"
    staged.write_bytes(b"shard")
    storage.publish_file(staged, storage.join(folder, "x.parquet"))
    assert not staged.exists()
    if not storage.is_local(folder):  # a temporary folder of this machine: ours to remove
        staging.rmdir()
    assert storage.read_bytes(storage.join(folder, "x.parquet")) == b"shard"
    with storage.open_input_file(storage.join(folder, "x.parquet")) as f:
        assert f.read() == b"shard"


def test_join_and_kinds():
    assert storage.join("s3://b/p/", "x", "y.pt") == "s3://b/p/x/y.pt"
    assert storage.is_uri("s3://b/p") and not storage.is_uri("runs/x")
    assert storage.is_local("runs/x") and storage.is_local("file:///tmp/x")
    assert not storage.is_local("s3://b/p")
    with pytest.raises(ValueError, match="not on the local filesystem"):
        storage.local_path("s3://b/p")


@pytest.mark.parametrize("uri", ["s3://b/runs/../x", "s3://b/./x", "s3://b/x/..",
                                 "file:///tmp/a/../b"])
def test_a_uri_with_dot_segments_is_refused_by_every_operation(uri):
    for operation in (storage.resolve, storage.exists, storage.list_files,
                      lambda u: storage.check_location(u, write=True)):
        with pytest.raises(storage.LocationError, match=r"may not hold '\.' or '\.\.'"):
            operation(uri)


def test_a_local_path_is_normalised_once(tmp_path):
    assert storage.resolve(f"{tmp_path}/a/../b")[1] == str(tmp_path / "b")
    storage.check_location(f"{tmp_path}/a/../b", write=True)  # local: the OS's meaning


@pytest.mark.parametrize("uri, message", [
    ("s3://", "s3://: the URI names no bucket"),
    ("s3:///x", "s3:///x: the URI names no bucket"),
    ("gs://", "gs://: the URI names no bucket"),
    ("s3://catneuron/a//x", "s3://catneuron/a//x: the URI has an empty path component ('//'); "
                            "did you mean s3://catneuron/a/x?"),
    ("s3://catneuron//x", "empty path component"),
    ("s3://catneuron/a//", "empty path component"),
])
def test_a_uri_without_a_bucket_or_with_an_empty_component_is_refused_in_our_words(uri, message):
    """pyarrow's own words named the write check's probe key ('Path cannot start with a
    separator ('/.catneuron-write-check-...')') or said 'Empty path component'."""
    for operation in (storage.resolve, storage.exists, storage.list_files,
                      lambda u: storage.check_location(u, write=True)):
        with pytest.raises(storage.LocationError) as caught:
            operation(uri)
        text = str(caught.value)
        assert message in text and "write-check" not in text and "\n" not in text


@pytest.mark.parametrize("uri", ["s3://catneuron", "s3://catneuron/", "s3://catneuron/a/x/"])
def test_a_bucket_alone_or_one_trailing_slash_is_fine(s3_store, uri):
    storage.check_location(uri, write=True)


def test_a_missing_dataset_suggests_a_command_that_can_be_pasted(s3_store):
    from pipeline.shards import read_manifest

    with pytest.raises(FileNotFoundError) as caught:
        read_manifest("s3://catneuron/my data")
    assert "`catneuron ingest --demo --out 's3://catneuron/my data'`" in str(caught.value)


def test_a_local_folder_that_cannot_be_made_is_one_line_and_nothing_is_left(tmp_path):
    """A run folder or --out under a file, or in /proc, was a traceback once Ray had started."""
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file" / "run", Path("/proc/catneuron-run")):
        with pytest.raises(storage.LocationError, match="cannot write a folder there"):
            storage.check_location(str(bad), write=True)
    storage.check_location(str(tmp_path / "new" / "deeper"), write=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # made, then removed
    storage.check_location(str(tmp_path / "file" / "run"))  # reading checks nothing locally


def test_an_upload_cut_short_publishes_nothing(s3_store, tmp_path, monkeypatch):
    """Ctrl-C between an upload's chunks: the stream's close would complete the upload, so a
    short object stood under the final name (an unreadable shard, which the next ingest then
    refused as a foreign file). Now nothing is published and no temporary is left."""
    folder = f"s3://catneuron/{uuid.uuid4().hex}"
    staged = tmp_path / ".x.tmp"
    staged.write_bytes(b"s" * 100_000)

    def cut(src, dst, length):
        dst.write(src.read(1000))
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.shutil, "copyfileobj", cut)
    with pytest.raises(KeyboardInterrupt):
        storage.publish_file(staged, storage.join(folder, "x-00000.parquet"))
    assert storage.list_files(folder) == []
    assert staged.exists()  # the finished local file is kept: publishing again works
    monkeypatch.undo()
    storage.publish_file(staged, storage.join(folder, "x-00000.parquet"))
    assert storage.list_files(folder) == ["x-00000.parquet"]
    assert storage.read_bytes(storage.join(folder, "x-00000.parquet")) == b"s" * 100_000
