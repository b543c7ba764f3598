"""Proof-of-play: a player's export attributes windows that carry no content id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyst.db import connect
from analyst.plays import read_plays
from analyst.report import build
from tests.reportdata import T0, Rows

ROOT = Path(__file__).resolve().parents[1]


def iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plays_csv(path: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    path.write_text("device_id,content_id,start,end,extra\n" + "".join(
        f"{d},{c},{iso(s)},{iso(e)},ignored\n" for d, c, s, e in rows))
    return path


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_plays_attribute_windows_without_content(backend: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    engine = connect(url)
    rows = Rows()
    # shop-1: four 30 s windows without content; the player exported A, B plays.
    for i in range(4):
        rows.add(start=T0 + 30 * i, seconds=30, content_id=None, viewers={"happy": i + 1})
    rows.add(start=T0 + 120, seconds=30, content_id="live", viewers={"sad": 5})  # announced
    rows.add(device="shop-2", start=T0, seconds=30, content_id=None, viewers={"sad": 7})
    rows.write(engine)
    plays = read_plays(plays_csv(tmp_path / "plays.csv", [
        ("shop-1", "A", T0 - 100, T0 + 40),  # covers window 0 and 1/3 of window 1
        ("shop-1", "B", T0 + 40, T0 + 200),  # 2/3 of window 1, all of 2, 3 and "live"
        ("shop-3", "C", T0, T0 + 60),  # another device: never joins shop-1's windows
    ]))
    r = build(engine, plays=plays)
    got = {g.key: (g.viewers, g.windows) for g in r.campaigns}
    assert got == {"A": (1, 1), "B": (2 + 3 + 4, 3), "live": (5, 1), "(none)": (7, 1)}
    assert {g.key: g.viewers for g in build(engine).campaigns} == {
        "live": 5, "(none)": 1 + 2 + 3 + 4 + 7}
    engine.dispose()


def test_a_window_split_evenly_stays_unattributed(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'm.db'}")
    rows = Rows()
    rows.add(start=T0, seconds=60, content_id=None, viewers={"happy": 1})
    rows.write(engine)
    plays = read_plays(plays_csv(tmp_path / "p.csv", [("shop-1", "A", T0 - 10, T0 + 30),
                                                      ("shop-1", "B", T0 + 30, T0 + 90)]))
    assert [g.key for g in build(engine, plays=plays).campaigns] == ["(none)"]


@pytest.mark.parametrize("text,message", [
    ("device_id,content_id,start\n", "no column end"),
    ("device_id,content_id,start,end\nshop-1,A,2026-11-24T07:00:00,2026-11-24T07:01:00Z\n",
     "has no UTC offset"),
    ("device_id,content_id,start,end\nshop-1,A,2026-11-24T07:01:00Z,2026-11-24T07:00:00Z\n",
     "p.csv:2: end is not after start"),
    ("device_id,content_id,start,end\nshop-1,,2026-11-24T07:00:00Z,2026-11-24T07:01:00Z\n",
     "empty device_id or content_id"),
    ("device_id,content_id,start,end\nshop-1,A,2026-11-24T07:00:00Z,2026-11-24T07:01:00Z\n"
     "shop-1,B,2026-11-24T07:00:30+00:00,2026-11-24T07:02:00Z\n",
     "plays on lines 2 and 3 overlap on device shop-1"),
    ("device_id,content_id,start,end\nshop-1,A,yesterday,2026-11-24T07:01:00Z\n",
     "is not an ISO 8601 time"),
])
def test_bad_plays_files_are_refused_saying_where(tmp_path: Path, text: str,
                                                  message: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_plays(f)
    db = tmp_path / "m.db"
    connect(f"sqlite:///{db}").dispose()
    done = subprocess.run([sys.executable, "-m", "analyst.report_cli", "--db", f"sqlite:///{db}",
                           "--plays", str(f)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and message in done.stderr
