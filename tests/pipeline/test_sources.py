"""Source expansion: files, folders, globs, list files, URLs."""

from __future__ import annotations

from pipeline.sources import expand_sources, is_url


def test_folder_glob_list_and_urls(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.mp4", "a/b/y.AVI", "a/b/notes.txt", "a/z.webm", "a/readme.md"]:
        (tmp_path / name).write_bytes(b"0")
    folder = [s.path for s in expand_sources([str(tmp_path / "a")])]
    assert sorted(folder) == sorted(str((tmp_path / p).resolve())
                                    for p in ["a/x.mp4", "a/b/y.AVI", "a/z.webm"])
    glob = [s.path for s in expand_sources([str(tmp_path / "a" / "**" / "*.mp4")])]
    assert glob == [str((tmp_path / "a/x.mp4").resolve())]
    lst = tmp_path / "sources.txt"
    lst.write_text("# my sources\n\na/x.mp4   # relative to the list\nhttps://example.org/v.mp4\n"
                   "ytsearch2:cat videos\n  # indented comment\n")
    got = expand_sources([str(lst), str(tmp_path / "a" / "x.mp4")])  # duplicate dropped
    assert [(s.path, s.url) for s in got] == [
        (str((tmp_path / "a/x.mp4").resolve()), None),
        (None, "https://example.org/v.mp4"),
        (None, "ytsearch2:cat videos"),
    ]


def test_unresolvable_sources_carry_a_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    got = expand_sources([str(tmp_path / "nope.mp4"), str(tmp_path / "empty"),
                          str(tmp_path / "*.mkv")])
    assert [s.error for s in got] == [
        "no such file, folder or URL (URLs need http:// or https://)",
        got[1].error,
        "glob matched no files",
    ]
    assert "no video files" in got[1].error


def test_is_url():
    assert is_url("https://www.youtube.com/watch?v=x") and is_url("ytsearch5:cats")
    assert is_url("ytsearchall:cats") and not is_url("clips/cat.mp4") and not is_url("C:/x.mp4")


def test_a_source_list_saved_with_a_byte_order_mark_keeps_its_first_line(tmp_path):
    """Windows editors (Notepad's "UTF-8 with BOM", PowerShell) start a text file with U+FEFF;
    it is not part of the first source."""
    (tmp_path / "x.mp4").write_bytes(b"0")
    for first in ["x.mp4", "https://example.org/v.mp4"]:
        lst = tmp_path / "sources.txt"
        lst.write_bytes("\ufeff".encode() + f"{first}\r\nytsearch2:cats\r\n".encode())
        got = expand_sources([str(lst)])
        assert [s.error for s in got] == [None, None], got
        assert got[0].path == str((tmp_path / "x.mp4").resolve()) or got[0].url == first


def test_a_pipe_or_device_given_as_a_source_is_refused_not_read(tmp_path):
    """Hashing a named pipe (``mkfifo x.mp4``, a shell's ``<(...)``) would wait forever for a
    writer: a source that is not a regular file carries a reason instead."""
    import os

    os.mkfifo(tmp_path / "x.mp4")
    got = expand_sources([str(tmp_path / "x.mp4")])
    assert len(got) == 1 and got[0].path is None and "not a regular file" in got[0].error


def test_a_home_relative_line_of_a_source_list_is_the_users_file(tmp_path, monkeypatch):
    """``~/clips/a.mp4`` in a list was joined to the list's folder (``LISTDIR/~/clips/a.mp4``)
    and failed as no such file; on the command line ``~`` is the home folder, and so it is in a
    list."""
    home = tmp_path / "home"
    (home / "clips").mkdir(parents=True)
    (home / "clips" / "a.mp4").write_bytes(b"0")
    monkeypatch.setenv("HOME", str(home))
    lst = tmp_path / "lists" / "sources.txt"
    lst.parent.mkdir()
    lst.write_text("~/clips/a.mp4\n")
    got = expand_sources([str(lst)])
    assert [(s.path, s.error) for s in got] == [(str((home / "clips" / "a.mp4").resolve()), None)]
