"""The gallery in a real browser: Debian's chromium driven by Selenium.

A fake-but-valid run (``tests/jobs/gallery_run.py``, with a hostile source and class name) is
rendered, served by ``http.server`` on 127.0.0.1 and crawled from the overview: every page loads
without console errors, every image has loaded, every link resolves, the hostile names show as
text and no dialog opens. One page is also opened from ``file://``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import urllib.request
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from tests.jobs.browser import chromium, missing_browser
from tests.jobs.gallery_run import HOSTILE_CLASS, HOSTILE_SOURCE, make_run

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(missing_browser() is not None,
                                 reason=str(missing_browser()))]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """A fake run with its gallery built; returns the run folder."""
    from jobs.gallery import build_gallery

    run = make_run(tmp_path_factory.mktemp("gallery"))
    build_gallery(run)
    return run


@contextlib.contextmanager
def serve(folder: Path):
    """``http.server`` serving ``folder`` on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(gallery):
    with serve(gallery) as base:
        yield base


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


def _console_errors(driver) -> list[str]:
    """SEVERE browser-log entries since the last call (the log is drained on read)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _no_dialog(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        _ = driver.switch_to.alert  # raises when no dialog is open
    except NoAlertPresentException:
        return True
    return False


def _images(driver) -> list[list]:
    """[src, naturalWidth] of every <img> of the current page."""
    return driver.execute_script(
        "return Array.from(document.images).map(i => [i.src, i.naturalWidth]);")


def _links(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")


def _check_page(driver, url: str) -> list[str]:
    """Load ``url``; assert it is sound; return its links."""
    driver.get(url)
    assert _no_dialog(driver), f"a dialog opened on {url}"
    assert driver.find_elements("css selector", "script") == [], url
    assert driver.find_elements("css selector", "main"), f"{url} did not render"
    broken = [src for src, width in _images(driver) if not width]
    assert not broken, f"{url}: images not loaded: {broken}"
    errors = _console_errors(driver)
    assert not errors, f"{url}: console errors: {errors}"
    return _links(driver)


def crawl(driver, server: str) -> tuple[set[str], int]:
    """Every page reachable from the overview, checked; (page URLs, images seen)."""
    seen, queue, n_images = set(), deque([server + "gallery/index.html"]), 0
    while queue:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        links = _check_page(driver, url)
        n_images += len(_images(driver))
        for link in links:
            target = urldefrag(link).url
            assert target.startswith(server), f"{url} links outside the gallery: {link}"
            with urllib.request.urlopen(target, timeout=10) as response:
                assert response.status == 200, link
            if urlsplit(target).path.endswith(".html"):
                queue.append(target)
    return seen, n_images


def _pages(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in (run / "gallery").rglob("*.html")}


def test_every_page_loads_and_every_link_resolves(driver, server, gallery):
    seen, n_images = crawl(driver, server)
    pages = _pages(gallery)
    crawled = {urlsplit(u).path.lstrip("/") for u in seen}
    assert crawled == pages, f"pages not reachable from the overview: {pages - crawled}"
    assert len(pages) == 1 + 2 + 18 + 4  # overview, 2 stages, 18 + 4 units
    assert n_images > 50


def test_hostile_names_show_as_text_and_open_no_dialog(driver, server):
    driver.get(server + "gallery/index.html")
    assert _no_dialog(driver)
    text = driver.find_element("tag name", "body").text
    assert HOSTILE_SOURCE in text and HOSTILE_CLASS in text
    assert driver.find_elements("css selector", "img[src=x]") == []
    driver.get(server + "gallery/stage0/unit2.html")
    assert _no_dialog(driver)
    assert HOSTILE_SOURCE in driver.find_element("tag name", "body").text
    assert _console_errors(driver) == []


def test_face_unit_is_the_first_thing_shown(driver, server):
    driver.get(server + "gallery/index.html")
    first = driver.find_element("css selector", "main > section")
    assert first.get_attribute("id") == "answer"
    assert "Yes: stage 1 pooled #5" in first.text
    assert first.location["y"] < 200


def test_opens_from_file_url(driver, gallery):
    index = gallery / "gallery" / "index.html"
    links = _check_page(driver, index.resolve().as_uri())
    stage = next(link for link in links if link.endswith("stage1.html"))
    assert stage.startswith("file://")
    unit_links = _check_page(driver, stage)
    unit = next(link for link in unit_links if link.endswith("unit5.html"))
    _check_page(driver, unit)
    assert len(_images(driver)) >= 5  # weights, optimal, 3 top frames, histogram, invariance


@pytest.mark.timeout(1500)
def test_fast_demo_gallery_in_the_browser(driver, demo_run):
    run = demo_run.out / "train"
    with serve(run) as base:
        seen, _ = crawl(driver, base)
    assert {urlsplit(u).path.lstrip("/") for u in seen} == _pages(run)
    driver.get((run / "gallery" / "index.html").resolve().as_uri())
    assert "Is there a unit selective for" in driver.find_element("id", "answer").text
    assert _console_errors(driver) == []
