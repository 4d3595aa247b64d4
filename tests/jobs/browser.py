"""Debian's chromium driven by Selenium, for the gallery's browser tests and its screenshot.

Only the system browser is used (``apt-get install chromium chromium-driver``): the driver path
is given to Selenium explicitly and ``SE_OFFLINE=1`` stops Selenium Manager from downloading
anything. The browser runs headless with its background network features off, so the only
requests it makes are the ones the pages make.

Screenshot of a gallery's overview (the README's image)::

    python -m tests.jobs.browser RUN/gallery/index.html benchmarks/results/gallery_overview.png
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} not found: apt-get install -y {package} (.ci/run does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def chromium(profile_dir: Path):
    """A headless chromium WebDriver with its console log readable (``get_log("browser")``)
    and alerts left open for the test to find."""
    os.environ["SE_OFFLINE"] = "1"  # never let Selenium Manager fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1400) -> Path:
    """Open ``page`` from disk and save a PNG of the first ``height`` pixels."""
    profile = Path(tempfile.mkdtemp(prefix="catneuron-chromium-"))
    driver = chromium(profile)
    try:
        driver.set_window_size(width, height)
        driver.get(page.resolve().as_uri())
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.jobs.browser PAGE.html OUT.png")
    reason = missing_browser()
    if reason:
        sys.exit(reason)
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
