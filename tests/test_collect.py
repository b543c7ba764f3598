"""`moodcam-collect` against a real mosquitto and real databases: every window once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyst.collect import parse, synth
from device import payloads
from tests import collect_support
from tests.broker import Broker
from tests.collect_support import (
    ROOT,
    CollectorProc,
    Publisher,
    rows,
    scalar,
    settle,
    wait_rows,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]
# The collector tests' own broker and their two databases (tests/collect_support.py).
broker = collect_support.broker
db = collect_support.db


def test_every_window_stored_once_with_status_availability_and_rejects(
        broker: Broker, db: str, tmp_path: Path) -> None:
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker)
    windows = [synth.mood(f"shop-{d}", s) for d in (1, 2) for s in range(1, 151)]
    pub.moods(windows)
    pub.moods(windows[:40])  # the spool's at-least-once re-send after a reconnect
    pub.send("moodcam/shop-1/status", synth.encode(
        synth.status("shop-1", state="degraded", camera="lost", fps=0.0, spool_depth=7)),
        retain=True)
    pub.send("moodcam/shop-1/availability", b"online", retain=True)
    pub.send("moodcam/shop-2/mood", b"{not json")
    v1 = {**synth.mood("shop-2", 999), "schema": "moodcam/mood/1"}
    pub.send("moodcam/shop-2/mood", synth.encode(v1))
    assert wait_rows(db, "rejects", 2) == 2
    assert settle(db, "windows") == 300
    assert col.terminate() == 0, col.log()
    pub.close()
    assert "2 rejected" in col.log() and "300 windows stored" in col.log(), col.log()
    assert scalar(db, "SELECT count(DISTINCT window_id) FROM windows") == 300
    assert scalar(db, "SELECT count(*) FROM window_labels") == 300 * 4
    raw = scalar(db, "SELECT raw FROM windows WHERE window_id = 'shop-1/00c0ffee00c0ffee/7'")
    assert json.loads(raw) == windows[6]
    assert rows(db, "SELECT availability, state, camera_state, fps, spool_depth FROM devices "
                "WHERE device_id = 'shop-1'") == [("online", "degraded", "lost", 0.0, 7)]
    reasons = sorted(r for (r,) in rows(db, "SELECT reason FROM rejects"))
    assert reasons[0].startswith("not UTF-8 JSON")
    assert reasons[1].startswith("unsupported schema 'moodcam/mood/1'")


def test_two_collectors_on_a_shared_subscription_store_each_window_once(
        broker: Broker, pg_url: str, tmp_path: Path) -> None:
    cols = [CollectorProc(broker, pg_url, tmp_path, f"c{i}", "--group", "fleet", "--batch",
                          "50") for i in (1, 2)]
    pub = Publisher(broker)
    n = pub.moods(synth.mood(f"shop-{s % 7}", s) for s in range(1, 2001))
    assert wait_rows(pg_url, "windows", n) == n
    assert settle(pg_url, "windows") == n
    stored = []
    for c in cols:
        assert c.terminate() == 0, c.log()
        line = next(x for x in c.log().splitlines() if "windows stored" in x)
        stored.append(int(line.split("stopped: ")[1].split()[0]))
    pub.close()
    # Both took part, and together they stored each window exactly once.
    assert sum(stored) == n and min(stored) > 0, stored
    assert scalar(pg_url, "SELECT count(DISTINCT window_id) FROM windows") == n
    assert scalar(pg_url, "SELECT count(*) FROM rejects") == 0


def test_a_broker_down_at_start_is_waited_for(broker: Broker, tmp_path: Path) -> None:
    broker.stop()
    db = f"sqlite:///{tmp_path}/collect.db"
    col = CollectorProc(broker, db, tmp_path, wait=False)
    assert not wait_rows(db, "windows", 1, timeout=3) > 0
    assert col.alive(), col.log()
    broker.start()
    col.wait_connected()
    pub = Publisher(broker)
    pub.moods(synth.mood("shop-1", s) for s in range(1, 11))
    assert wait_rows(db, "windows", 10) == 10
    assert col.terminate() == 0
    pub.close()


def test_the_fast_validation_agrees_with_the_payload_contract() -> None:
    good = [synth.mood(), synth.mood(viewers={}, frames=0), synth.mood(recovered=True,
                                                                       clock="unsynced")]
    bad = []
    for key, value in [("seq", 0), ("stream", "XYZ"), ("clock", "maybe"), ("viewers_total", 9),
                       ("end", "2026-11-24T06:00:00Z"), ("window_id", "shop-1/00c0ffee00c0ffee/2"),
                       ("extra", 1), ("fps", -1), ("labels", ["happy"]), ("recovered", "no"),
                       ("start", "2026-11-24 07:00:00"), ("content_id", "")]:
        bad.append({**synth.mood(), key: value})
    bad.append({k: v for k, v in synth.mood().items() if k != "clock"})
    for obj in good:
        payloads.validate_mood(obj)
        parse.check_mood(obj)
    for obj in bad:
        with pytest.raises(ValueError) as reference:
            payloads.validate_mood(obj)
        with pytest.raises(ValueError) as fast:
            parse.check_mood(obj)
        assert str(fast.value) == str(reference.value)  # same verdict, same words


def test_an_unreachable_database_at_start_gives_one_line_and_exit_1() -> None:
    from tests.broker import free_port

    db = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    r = subprocess.run([sys.executable, "-m", "analyst.collect.cli", "--db", db], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().startswith("moodcam-collect: cannot open the database"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["--mqtt", "nohost"], ["--db", "mysql://x/y"], ["--batch", "0"]):
        r = subprocess.run([sys.executable, "-m", "analyst.collect.cli", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith(("moodcam-collect", "usage")), \
            r.stderr
        assert "Traceback" not in r.stderr
