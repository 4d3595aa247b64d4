"""yt-dlp through its Python API against a loopback HTTP server (no outside network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.fetch import ARCHIVE, FetchConfig, FetchError, fetch, ydl_options
from tests.pipeline.conftest import make_video


def test_direct_link_is_fetched_once_and_archived(http_dir, tmp_path):
    www, base = http_dir
    make_video(www / "clip one.mp4", n_frames=30)
    dest = tmp_path / "dl"
    url = f"{base}/clip%20one.mp4"
    got = fetch(url, dest)
    assert len(got) == 1
    path = Path(got[0].path)
    assert path.parent == dest.resolve() and path.suffix == ".mp4"
    assert path.read_bytes() == (www / "clip one.mp4").read_bytes()
    assert (dest / ARCHIVE).read_text().strip()  # recorded in the download archive
    path.touch()
    mtime = path.stat().st_mtime_ns
    again = fetch(url, dest)  # archived: not downloaded again, but the file is still returned
    assert [g.path for g in again] == [str(path)] and path.stat().st_mtime_ns == mtime


def test_index_entries_outside_the_download_folder_are_not_returned(http_dir, tmp_path):
    """``index.json`` naming files elsewhere (absolute, ``..``, a link out of the folder) next
    to the real download: only the download comes back, as a path inside the folder."""
    import json

    www, base = http_dir
    make_video(www / "clip.mp4", n_frames=30)
    dest = tmp_path / "dl"
    url = f"{base}/clip.mp4"
    real = Path(fetch(url, dest)[0].path)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not yours")
    (dest / "link.mp4").symlink_to(outside)
    index = json.loads((dest / "index.json").read_text())
    index[url] += [[url, str(outside)], [url, "../secret.mp4"], [url, "link.mp4"]]
    (dest / "index.json").write_text(json.dumps(index))
    assert [g.path for g in fetch(url, dest)] == [str(real)]


def test_not_a_video_and_unreachable_urls_fail_clearly(http_dir, tmp_path, closed_port_url):
    www, base = http_dir
    (www / "page.html").write_text("<html><body><p>no video here</p></body></html>")
    with pytest.raises(FetchError, match="could not fetch .*page.html: .*[Uu]nsupported URL"):
        fetch(f"{base}/page.html", tmp_path / "dl")
    with pytest.raises(FetchError, match="could not fetch"):
        fetch(closed_port_url, tmp_path / "dl", FetchConfig(socket_timeout=2))


def test_size_limit_skips_large_downloads(http_dir, tmp_path):
    www, base = http_dir
    make_video(www / "big.mp4", n_frames=60)
    with pytest.raises(FetchError, match="per-video limits.*max-filesize"):
        fetch(f"{base}/big.mp4", tmp_path / "dl", FetchConfig(max_filesize=1000))
    assert not list((tmp_path / "dl").glob("*.mp4"))


@pytest.mark.parametrize("hostile", ["../../x", "<script>alert(1)</script>", "/etc/passwd"])
def test_hostile_titles_and_ids_stay_inside_the_download_folder(tmp_path, hostile):
    import yt_dlp

    dest = tmp_path / "dl"
    opts = ydl_options(dest, FetchConfig())
    assert opts["postprocessors"] == [] and "exec_cmd" not in opts
    with yt_dlp.YoutubeDL(opts) as ydl:
        name = ydl.prepare_filename(
            {"id": hostile, "title": hostile, "ext": "mp4", "extractor_key": "Generic"}
        )
    p = Path(name).resolve()
    assert p.is_relative_to(dest.resolve()) and p.parent == dest.resolve()
    assert "<" not in p.name and ">" not in p.name and "/" not in p.name


def test_duration_filter_skips_long_videos_and_passes_unknown(tmp_path):
    match = ydl_options(tmp_path, FetchConfig(max_duration_s=600))["match_filter"]
    assert match({"id": "a", "title": "long", "duration": 601}) is not None  # skipped
    assert match({"id": "b", "title": "short", "duration": 600}) is None
    assert match({"id": "c", "title": "direct link, no duration"}) is None
