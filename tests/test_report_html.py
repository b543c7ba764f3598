"""The HTML report in a real headless Chromium (Debian's chromium + chromium-driver through
selenium): every plot renders, the console stays clean, nothing is fetched from outside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from analyst.db import connect
from analyst.report import build
from analyst.report_html import html_report
from tests.browser import browser, open_report
from tests.reportdata import T0, Rows

__all__ = ["browser"]


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
