"""moodcam-report on SQLite and a real PostgreSQL: exact numbers from known windows, the
stratified comparison, data-quality counts, CSV/text outputs and the CLI's errors."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from analyst.db import connect
from analyst.report import build
from analyst.report_text import csv_text, text
from analyst.stats import wilson
from tests.reportdata import T0, Rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'moodcam.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = connect(db_url)
    yield e
    e.dispose()


def two_campaigns(rows: Rows, *, device: str = "shop-1", hour: int = 0) -> None:
    """In one hour: A 60 happy/20 sad/20 neutral/10 unknown; B 30/50/20/0, in 30 s windows
    alternating A, B, A, B (so both are seen in the same device-hour)."""
    a = [{"happy": 15, "sad": 5, "neutral": 5, "unknown": 3}] * 3 + [
        {"happy": 15, "sad": 5, "neutral": 5, "unknown": 1}]
    b = [{"happy": 10, "sad": 10, "neutral": 5}, {"happy": 10, "sad": 20, "neutral": 5},
         {"happy": 10, "sad": 20, "neutral": 10}]
    t = T0 + hour * 3600
    for i in range(4):
        rows.add(device=device, start=t, seconds=30, content_id="A", viewers=a[i],
                 dwell=(12.0, 9.2))
        t += 30
        if i < 3:
            rows.add(device=device, start=t, seconds=30, content_id="B", viewers=b[i],
                     dwell=(6.0, 4.1))
            t += 30


def test_campaign_numbers_are_exact(engine: Engine) -> None:
    rows = Rows()
    two_campaigns(rows)
    rows.write(engine)
    r = build(engine)
    a, b = r.campaigns
    assert (a.key, a.viewers, a.classified, a.windows, a.shown_s) == ("A", 110, 100, 4, 120.0)
    assert (b.key, b.viewers, b.classified) == ("B", 100, 100)
    assert a.viewers_per_hour == pytest.approx(110 / (120 / 3600))
    assert a.dwell_mean == pytest.approx(12.0)
    assert a.dwell_median == pytest.approx(9.25)  # the 0.5 s bin 9.0-9.5, its middle
    assert r.moods == ["happy", "sad", "neutral"]
    assert a.share("happy").share == pytest.approx(0.6)

    rows_csv = list(csv.DictReader(io.StringIO(csv_text(r))))
    assert [x["content_id"] for x in rows_csv] == ["A", "B"]
    row = rows_csv[0]
    low, high = wilson(60, 100)
    assert float(row["happy_share"]) == pytest.approx(0.6)
    assert float(row["happy_low"]) == pytest.approx(low, abs=1e-4)
    assert float(row["happy_high"]) == pytest.approx(high, abs=1e-4)
    assert float(rows_csv[1]["sad_share"]) == pytest.approx(0.5)
    assert float(row["dwell_mean_s"]) == pytest.approx(12.0)
    assert (row["viewers"], row["unknown_viewers"], row["classified_viewers"]) == (
        "110", "10", "100")
    for col in ("content_id", "viewers", "happy_share", "happy_low", "happy_high",
                "sad_share", "sad_low", "sad_high", "dwell_mean_s"):
        assert col in row

    c = r.comparison
    assert c.strata == 1 and c.shared_viewers == 200
    assert c.pooled is not None and c.pooled.p_value < 0.001
    happy = next(p for p in c.pairs if p[2] == "happy")
    assert happy[3] is not None and happy[3].estimate == pytest.approx(0.3)
    assert happy[4].startswith("A has a higher happy share than B: +30.0 points")
    out = text(r)
    assert "A has a higher happy share than B" in out
    assert "Stratified Cochran-Mantel-Haenszel: " in out


def test_time_of_day_does_not_make_a_campaign_look_happier(engine: Engine) -> None:
    """Simpson's paradox through the database: in the morning (happy audience) A shows 10
    times as often as B, in the evening (sad audience) the reverse. Within each hour the
    two are identical; pooled, A looks far happier."""
    rows = Rows()
    morning, evening = T0, T0 + 10 * 3600
    for _ in range(10):
        rows.add(start=morning, content_id="A", viewers={"happy": 8, "sad": 2})
        rows.add(start=evening, content_id="B", viewers={"happy": 2, "sad": 8})
        morning += 60
        evening += 60
    rows.add(start=morning, content_id="B", viewers={"happy": 8, "sad": 2})
    rows.add(start=evening, content_id="A", viewers={"happy": 2, "sad": 8})
    rows.write(engine)
    r = build(engine, min_viewers=5)
    c = r.comparison
    assert c.pooled is not None and c.pooled.p_value < 1e-6  # the misleading answer
    assert c.stratified is not None and c.stratified.p_value > 0.9
    happy = next(p for p in c.pairs if p[2] == "happy")
    assert happy[3] is not None and happy[3].estimate == pytest.approx(0.0, abs=1e-12)
    assert "cannot tell their happy shares apart" in happy[4]


def test_campaigns_never_seen_together_and_few_viewers(engine: Engine) -> None:
    rows = Rows()
    rows.add(start=T0, content_id="A", viewers={"happy": 50, "sad": 10})
    rows.add(start=T0 + 2 * 3600, content_id="B", viewers={"happy": 10, "sad": 50})
    rows.add(start=T0 + 4 * 3600, content_id="C", viewers={"happy": 3, "sad": 1})
    rows.add(start=T0 + 4 * 3600 + 60, content_id="A", viewers={"happy": 2, "sad": 1})
    rows.write(engine)
    sentences = {(a, b, m): s for a, b, m, _, s in build(engine).comparison.pairs}
    assert "never both seen by the same device in the same hour" in sentences[
        ("A", "B", "happy")]
    assert sentences[("A", "C", "happy")] == (
        "A vs C: not enough viewers to tell their happy shares apart: 3 and 4 classified "
        "viewers in shared device-hours, at least 30 each are needed.")


def test_devices_hours_and_data_quality(engine: Engine) -> None:
    rows = Rows()
    two_campaigns(rows, device="shop-1", hour=0)
    two_campaigns(rows, device="shop-2", hour=3)
    rows.add(device="shop-2", start=T0 + 5 * 3600, content_id=None, frames=0, seq=20)
    rows.add(device="shop-2", start=T0 + 5 * 3600 + 60, content_id=None, clock="unsynced",
             viewers={"happy": 1})
    rows.write(engine)
    r = build(engine, tz="Europe/Zurich")  # UTC+1 in November
    assert [g.key for g in r.devices] == ["shop-1", "shop-2"]
    assert [g.key for g in r.hours] == ["08", "11", "13"]
    assert [g.key for g in r.campaigns] == ["A", "B", "(none)"]
    q = r.quality
    # shop-2's stream: seq 1-7, then 20, 21: 12 windows never received.
    assert (q.windows, q.streams, q.missing, q.dead, q.unsynced) == (16, 2, 12, 1, 1)
    assert r.comparison.strata == 2
    rows_csv = list(csv.DictReader(io.StringIO(csv_text(r))))
    assert rows_csv[-1]["content_id"] == "" and rows_csv[-1]["viewers"] == "1"
    assert "missing (seq gaps) 12" in text(r)


def test_empty_database(engine: Engine) -> None:
    r = build(engine)
    assert "No windows in the database" in text(r)
    assert csv_text(r).count("\n") == 1  # the header only


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyst.report_cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_csv_and_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    e = connect(url)
    rows = Rows()
    two_campaigns(rows)
    rows.write(e)
    e.dispose()
    out = tmp_path / "r.csv"
    done = run_report("--db", url, "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("content_id,")
    done = run_report("--db", url, "--since", "2026-11-24T07:00Z", "--until", "2026-11-25")
    assert done.returncode == 0 and "A has a higher happy share than B" in done.stdout
    done = run_report("--db", url, "--since", "2026-11-25")
    assert done.returncode == 0 and "No windows" in done.stdout


@pytest.mark.parametrize("args,message,rc", [
    (["--db", "sqlite:////nonexistent/m.db"], "no such file (moodcam-collect creates it)", 2),
    (["--db", "mysql://x@y/z"], "unsupported database", 2),
    (["--db", "sqlite:///{db}", "--out", "/nonexistent/r.html"], "does not exist", 2),
    (["--db", "sqlite:///{db}", "--tz", "Mars/Olympus"], "is not a time zone", 2),
    (["--db", "sqlite:///{db}", "--since", "yesterday"], "is not a date/time", 2),
    (["--db", "sqlite:///{empty}"], "cannot read sqlite:///", 1),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str,
                                 rc: int) -> None:
    db = tmp_path / "m.db"
    connect(f"sqlite:///{db}").dispose()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    done = run_report(*[a.format(db=db, empty=empty) for a in args])
    assert done.returncode == rc
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 or rc == 2, done.stderr


def test_unsynced_windows_count_but_have_no_hour(engine: Engine) -> None:
    """A window stamped by a clock never confirmed (here: 1970, a Pi without RTC or NTP)
    counts for its campaign and device, but not in hours, the timeline or the period."""
    rows = Rows()
    two_campaigns(rows)
    rows.add(start=3600.0, content_id="A", clock="unsynced", viewers={"happy": 4})
    rows.write(engine)
    r = build(engine)
    assert r.campaigns[0].viewers == 110 + 4 and r.campaigns[0].share("happy").k == 64
    assert sum(g.viewers for g in r.hours) == 210
    assert r.timeline_step_s == 10
    assert min(b for series in r.timeline.values() for b in series) == int(T0 // 10)
    assert sum(n for series in r.timeline.values() for n in series.values()) == 210
    assert r.first is not None and r.first.year == 2026
    assert r.quality.unsynced == 1
    assert r.comparison.shared_viewers == 200  # the unsynced viewers are in no device-hour


def test_viewers_over_time_by_minute_hour_or_day(engine: Engine) -> None:
    from analyst.report import timeline_step

    assert [timeline_step(s) for s in (0, 2000, 2001, 12000, 120000, 120001, 720001)] == [
        10, 10, 60, 60, 600, 3600, 86400]
    rows = Rows()
    two_campaigns(rows)  # A at minutes 0-3 (28, 28, 28, 26 viewers), B at 0-2
    rows.write(engine)
    r = build(engine)  # 3.5 minutes: 10 s points
    assert r.timeline_step_s == 10
    t0 = int(T0 // 10)
    assert r.timeline["A"] == {t0: 28, t0 + 6: 28, t0 + 12: 28, t0 + 18: 26}
    assert r.timeline["B"] == {t0 + 3: 25, t0 + 9: 35, t0 + 15: 40}
    rows.add(start=T0 + 5 * 3600, content_id="A", viewers={"happy": 1})
    rows.write(engine)
    r = build(engine)  # 5 h: 10-minute points
    assert r.timeline_step_s == 600 and r.timeline["A"][int(T0 // 600)] == 28 * 3 + 26
