"""The HTML report in a real headless Chromium (Debian's chromium + chromium-driver through
selenium): every plot renders, the console stays clean, nothing is fetched from outside."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyst.db import connect
from analyst.report import build
from analyst.report_html import html_report
from tests.reportdata import T0, Rows

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
                "--window-size=1200,900", "--hide-scrollbars"):
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
    driver.set_window_size(1200, min(int(info["height"]) + 40, 8000))
    assert driver.save_screenshot(str(screenshot))
    info["console"] = driver.get_log("browser")
    return info


def test_html_report_renders_every_plot_in_chromium(browser: Any, tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'm.db'}")
    rows = Rows()
    for hour in range(6):
        t = T0 + hour * 3600
        for i in range(20):
            rows.add(start=t + 120 * i, content_id="summer-sale",
                     viewers={"happy": 3 + hour % 2, "sad": 1, "neutral": 1, "unknown": 1},
                     dwell=(8.0 + i % 5, 6.0 + i % 7))
            rows.add(start=t + 120 * i + 60, content_id="winter$coats <b>",
                     viewers={"happy": 1, "sad": 3, "neutral": 1}, dwell=(4.0, 3.0 + i % 3))
    rows.write(engine)
    page = tmp_path / "report.html"
    page.write_text(html_report(build(engine)), encoding="utf-8")
    engine.dispose()

    source = page.read_text()
    assert "<script" not in source and "<link" not in source
    assert 'src="http' not in source and "url(" not in source  # self-contained
    assert "winter$coats &lt;b&gt;" in source  # content ids are text, never markup

    shot = tmp_path / "report.png"
    info = open_report(browser, page, shot)
    ids = {i["id"] for i in info["images"]}
    assert ids == {"plot-viewers", "plot-shares", "plot-dwell"}
    for img in info["images"]:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert [e for e in info["console"] if e["level"] in ("SEVERE", "WARNING")] == []
    assert info["title"].startswith("moodcam report")
    assert shot.stat().st_size > 10_000
    # `MOODCAM_REPORT_SCREENSHOT=docs/report.png pytest tests/test_report_html.py` refreshes
    # the README's screenshot.
    if target := os.environ.get("MOODCAM_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, target)
