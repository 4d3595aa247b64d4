"""Shard writer bounds, atomic naming, checksums; manifest commit and clean-up."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.shards import (
    ShardWriter,
    clean_uncommitted,
    commit_video,
    empty_manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)


def _frames(n, h=8, w=6, c=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_rows_bound_names_and_checksums(tmp_path):
    x = _frames(25)
    with ShardWriter(tmp_path, "vid", max_rows=10) as w:
        w.write("src", x[:7], np.arange(7), np.zeros(7))
        w.write("src", x[7:], np.arange(7, 25), np.zeros(18))
        shards = w.finalize()
    assert [s.path for s in shards] == ["vid-00000.parquet", "vid-00001.parquet",
                                        "vid-00002.parquet"]
    assert [s.rows for s in shards] == [10, 10, 5]
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    got = []
    for s in shards:
        assert sha256_file(tmp_path / s.path) == s.sha256
        t = pq.read_table(tmp_path / s.path)
        assert str(t.schema.field("pixels").type) == "fixed_size_binary[48]"
        got += t.column("pixels").to_pylist()
    assert got == [f.tobytes() for f in x]


def test_bytes_bound(tmp_path):
    x = _frames(10, 10, 10, 3)  # 300 bytes a frame
    with ShardWriter(tmp_path, "v", max_rows=1000, max_bytes=1000) as w:
        w.write("s", x, np.arange(10), np.zeros(10))
        shards = w.finalize()
    assert [s.rows for s in shards] == [3, 3, 3, 1]


def test_error_inside_writer_leaves_no_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "v", max_rows=4) as w:
        w.write("s", _frames(3), np.arange(3), np.zeros(3))
        (tmp_path / ".v-00009.parquet.tmp").write_bytes(b"half")  # as if killed mid-write
        raise RuntimeError("boom")
    assert not list(tmp_path.glob(".*"))


def test_manifest_commit_and_clean_uncommitted(tmp_path):
    with ShardWriter(tmp_path, "a", max_rows=4) as w:
        w.write("a", _frames(6), np.arange(6), np.zeros(6))
        a = w.finalize()
    with ShardWriter(tmp_path, "b", max_rows=4) as w:  # written, never committed (killed)
        w.write("b", _frames(3), np.arange(3), np.zeros(3))
        w.finalize()
    (tmp_path / ".a-00007.parquet.tmp").write_bytes(b"partial")
    m = empty_manifest({"input_size": 8})
    commit_video(m, {"source": "a", "status": "ok", "frames": 6, "error": None}, a)
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == m
    removed = clean_uncommitted(tmp_path, m)
    assert removed == [".a-00007.parquet.tmp", "b-00000.parquet"]
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["a-00000.parquet",
                                                                  "a-00001.parquet"]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a catneuron dataset"):
        read_manifest(tmp_path)
    (tmp_path / "_manifest.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "_manifest.json").write_text('{"schema_version": 99}')
    with pytest.raises(ValueError, match="schema_version 99"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("name", ["", ".", "..", "sub/part.parquet", "..\\part.parquet",
                                  "part\0.parquet", "/etc/passwd", None, 3])
def test_every_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    """Each way a manifest's shard name can leave (or be) its folder, one at a time: a reader
    or a clean-up would open or remove ``root / name``, and ``..`` is the folder above. The
    ingest test covers ``../x`` and an absolute path only, so dropping the ``"", ".", ".."``
    test (or the backslash, NUL or type tests) passed every test."""
    from pipeline.shards import ManifestError, check_manifest_paths, is_plain_name

    assert not is_plain_name(name)
    manifest = {"shards": [], "videos": [{"source": "x.mp4", "status": "failed",
                                          "shards": [name]}]}
    with pytest.raises(ManifestError, match="not a plain file name"):
        check_manifest_paths(tmp_path, manifest)
    assert is_plain_name("part-00000.parquet") and is_plain_name("..part")
    check_manifest_paths(tmp_path, {"shards": [], "videos": [{"source": "x.mp4",
                                                              "status": "failed", "shards": []}]})
