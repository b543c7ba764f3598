"""A real headless Chromium for the tests (Debian's chromium + chromium-driver, through
selenium): the `browser` fixture and `open_report`, which loads a page, waits for its
images and saves a full-page screenshot."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_paths() -> tuple[str, str]:
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install "
                    "chromium chromium-driver; deploy/test.sh does it): the HTML report "
                    "test needs a real browser")
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    yield driver
    driver.quit()


def open_report(driver: Any, page: Path, screenshot: Path) -> dict[str, Any]:
    """Load the page, wait for its images, save a full-page screenshot; what rendered."""
    driver.get(page.as_uri())
    info: dict[str, Any] = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.images);
        Promise.all(imgs.map(i => i.decode().catch(() => null))).then(() => done({
          images: imgs.map(i => ({id: i.id, complete: i.complete, width: i.naturalWidth,
                                  height: i.naturalHeight})),
          height: document.documentElement.scrollHeight,
          title: document.title,
        }));
    """)
    driver.set_window_size(1280, min(int(info["height"]) + 40, 8000))
    assert driver.save_screenshot(str(screenshot))
    info["console"] = driver.get_log("browser")
    return info
