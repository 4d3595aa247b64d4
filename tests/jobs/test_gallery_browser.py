"""The gallery in a real browser: Debian's chromium driven by Selenium.

A fake-but-valid run (``tests/jobs/gallery_run.py``, with a hostile source and class name) is
rendered, served by ``http.server`` on 127.0.0.1 and crawled from the overview: every page loads
without console errors, every image has loaded, every link resolves, the hostile names show as
text and no dialog opens. One page is also opened from ``file://``. The overview's headline link
leads to the headline unit's page, and every figure shown for a unit (or a set of units) reads
the same on every page that shows it: on the fake run and on a real ``catneuron demo --fast``.
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
from tests.jobs.gallery_run import HOSTILE_CLASS, HOSTILE_SOURCE, VERDICT_TEXT, make_run

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


def crawl(driver, server: str, units_per_stage: int | None = None) -> tuple[set[str], int]:
    """Every page reachable from the overview, checked; (page URLs, images seen).

    Every link is fetched; with ``units_per_stage`` only that many unit pages of each stage
    folder are opened in the browser (a real run lists every unit of stage 0)."""
    seen, queue, n_images = set(), deque([server + "gallery/index.html"]), 0
    opened: dict[str, int] = {}
    while queue:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        folder = urlsplit(url).path.rsplit("/", 1)[0]
        if units_per_stage is not None and not folder.endswith("/gallery"):
            opened[folder] = opened.get(folder, 0) + 1
            if opened[folder] > units_per_stage:
                continue
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


def _figures(driver) -> list[list[str]]:
    """[what, text] of every figure on the current page: ``what`` is ``unit:<stage/layer/index>``
    or ``set:<name>``, then ``:ba`` or ``:auc``."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-unit], [data-set]')).map(e => ["
        "(e.dataset.unit !== undefined ? 'unit:' + e.dataset.unit : 'set:' + e.dataset.set)"
        " + ':' + e.dataset.what, e.textContent.trim()]);")


def follow_headline(driver, overview: str) -> tuple[str, str]:
    """Open the overview, click the headline unit's link; (the link's text, the unit page's
    URL). The page must be that unit's, with its top frames loaded."""
    driver.get(overview)
    link = driver.find_element("id", "headline")
    name = link.text  # "stage 1 hidden #4"
    link.click()
    stage, layer, index = name.removeprefix("stage ").split(" ")
    assert driver.find_element("tag name", "h1").text == f"Stage {stage} {layer} unit {index}"
    frames = [src for src, width in _images(driver) if "_top" in src]
    assert frames and all(width for src, width in _images(driver) if "_top" in src)
    return name, driver.current_url


def figures_across(driver, urls: list[str]) -> dict[str, dict[str, set[str]]]:
    """figure -> text -> pages showing it with that text, over ``urls``."""
    shown: dict[str, dict[str, set[str]]] = {}
    for url in urls:
        driver.get(url)
        for what, text in _figures(driver):
            shown.setdefault(what, {}).setdefault(text, set()).add(urlsplit(url).path)
    return shown


def assert_one_figure_each(shown: dict[str, dict[str, set[str]]]) -> None:
    differ = {what: texts for what, texts in shown.items() if len(texts) > 1}
    assert not differ, f"figures that differ between pages: {differ}"


def _pages(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in (run / "gallery").rglob("*.html")}


def test_every_page_loads_and_every_link_resolves(driver, server, gallery):
    seen, n_images = crawl(driver, server)
    pages = _pages(gallery)
    crawled = {urlsplit(u).path.lstrip("/") for u in seen}
    assert crawled == pages, f"pages not reachable from the overview: {pages - crawled}"
    assert len(pages) == 1 + 2 + 18 + 5 + 2  # overview, 2 stages, 18 + 5 pooled + 2 hidden
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
    assert first.find_element("css selector", "p.lead").text == VERDICT_TEXT
    assert first.location["y"] < 200


def test_headline_link_and_every_figure_agree_across_pages(driver, server):
    name, unit_page = follow_headline(driver, server + "gallery/index.html")
    assert name == "stage 1 hidden #4" and unit_page.endswith("/gallery/stage1/hidden4.html")
    seen, _ = crawl(driver, server)
    shown = figures_across(driver, sorted(seen))
    assert_one_figure_each(shown)
    paths = {"/gallery/index.html", "/gallery/stage1.html", "/gallery/stage1/hidden4.html"}
    for what in ("unit:1/hidden/4:ba", "unit:1/hidden/4:auc"):
        (pages,) = shown[what].values()
        assert pages == paths, what  # the overview, its stage page and its own page
    assert shown["unit:1/hidden/4:ba"] == {"0.840 ± 0.020": paths}


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
        seen, _ = crawl(driver, base, units_per_stage=5)
    assert {urlsplit(u).path.lstrip("/") for u in seen} <= _pages(run)
    assert {p for p in _pages(run) if "/" not in p.removeprefix("gallery/")} <= {
        urlsplit(u).path.lstrip("/") for u in seen}  # the overview and every stage page
    driver.get((run / "gallery" / "index.html").resolve().as_uri())
    assert "Is there a unit selective for" in driver.find_element("id", "answer").text
    assert _console_errors(driver) == []
    # the headline unit has its page, whatever its layer, and its figures agree everywhere
    with serve(run) as base:
        name, unit_page = follow_headline(driver, base + "gallery/index.html")
        stage_page = unit_page.rsplit("/", 1)[0] + ".html"
        shown = figures_across(driver, [base + "gallery/index.html", stage_page, unit_page])
    assert_one_figure_each(shown)
    key = "unit:{}/{}/{}".format(*name.removeprefix("stage ").replace("#", "").split(" "))
    assert len(shown[key + ":ba"]) == 1 and len(next(iter(shown[key + ":ba"].values()))) == 3
