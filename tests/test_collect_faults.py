"""The collector through faults: nothing lost, nothing doubled (issue 10, section 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyst.collect import synth
from tests import collect_support
from tests.broker import Broker, wait_until
from tests.collect_support import (
    CollectorProc,
    Publisher,
    rows,
    scalar,
    settle,
    wait_rows,
)
from tests.pg import PostgresServer

pytestmark = [pytest.mark.broker, pytest.mark.slow]
# The collector tests' own broker and their two databases (tests/collect_support.py).
broker = collect_support.broker
db = collect_support.db
START = datetime(2026, 11, 24, 7, tzinfo=UTC)


def exactly_once(db: str, n: int) -> None:
    assert settle(db, "windows") == n
    assert scalar(db, "SELECT count(DISTINCT window_id) FROM windows") == n
    assert scalar(db, "SELECT count(*) FROM window_labels") == 4 * n


def test_postgres_stopped_mid_run_nothing_acknowledged_nothing_lost(
        broker: Broker, postgres_private: PostgresServer, tmp_path: Path) -> None:
    db = postgres_private.create_database("collect")
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker)
    pub.moods(synth.mood("shop-1", s) for s in range(1, 301))
    assert wait_rows(db, "windows", 300) == 300
    postgres_private.stop()
    pub.moods(synth.mood("shop-1", s) for s in range(301, 601))
    assert wait_until(lambda: "database unavailable" in col.log(), 30), col.log()
    # The broker still holds them for the collector's session: nothing was acknowledged.
    assert col.alive()
    postgres_private.start()
    assert wait_rows(db, "windows", 600, timeout=60) == 600, col.log()
    exactly_once(db, 600)
    assert col.terminate() == 0
    pub.close()


def test_broker_restarted_with_the_collector_up_and_while_it_was_down(
        broker: Broker, db: str, tmp_path: Path) -> None:
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker, "dev-a")
    pub.moods(synth.mood("shop-1", s) for s in range(1, 201))
    broker.stop()
    broker.start()
    pub.moods(synth.mood("shop-1", s) for s in range(201, 401))  # paho reconnected both
    assert wait_rows(db, "windows", 400) == 400, col.log()
    # Now the collector is down while windows arrive, and the broker restarts meanwhile:
    # the persistent session keeps them queued.
    assert col.terminate() == 0
    pub.moods(synth.mood("shop-2", s) for s in range(1, 301))
    broker.stop()
    broker.start()
    col.start()
    assert "session resumed" in col.log()
    assert wait_rows(db, "windows", 700) == 700, col.log()
    exactly_once(db, 700)
    assert col.terminate() == 0
    pub.close()


def test_collector_killed_mid_batch_loses_and_doubles_nothing(
        broker: Broker, db: str, tmp_path: Path) -> None:
    col = CollectorProc(broker, db, tmp_path, "c1", "--batch", "50")
    assert col.terminate() == 0  # the session exists; now queue a backlog for it
    pub = Publisher(broker)
    n = pub.moods(synth.mood(f"shop-{s % 3}", s) for s in range(1, 3001))
    col.start()
    assert wait_rows(db, "windows", 100) >= 100
    col.kill()  # SIGKILL, mid-backlog: some batches committed but not acknowledged
    at_kill = settle(db, "windows", 0.5)
    assert 0 < at_kill < n, "the kill came too late to be mid-run"
    col.start()
    assert wait_rows(db, "windows", n) == n, col.log()
    exactly_once(db, n)
    assert col.terminate() == 0
    pub.close()


def test_malformed_messages_are_rejected_with_a_reason_and_the_collector_goes_on(
        broker: Broker, db: str, tmp_path: Path) -> None:
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker)
    huge_seq = 9_999_999_999_999_999_999  # the schema allows 19 digits; BIGINT does not
    bad: list[tuple[str, bytes, str]] = [
        ("moodcam/shop-1/mood", b"\xff\xfe", "not UTF-8 JSON"),
        ("moodcam/shop-1/mood", b"[1, 2]", "unsupported schema"),
        ("moodcam/shop-1/mood", b"x" * 300_000, "not UTF-8 JSON"),
        ("moodcam/shop-1/mood", synth.encode({**synth.mood(), "viewers_total": 5}),
         "invalid mood payload"),
        ("moodcam/shop-9/mood", synth.encode(synth.mood("shop-1", 2)), "differs from the topic"),
        ("moodcam/shop-1/status", synth.encode({**synth.status(), "fps": "fast"}),
         "invalid status payload"),
        ("moodcam/shop-1/availability", b"maybe", "availability"),
        ("moodcam/shop-1/mood", synth.encode(synth.mood("shop-1", huge_seq, start=START)),
         "database refused"),
    ]
    for topic, payload, _ in bad:
        pub.send(topic, payload)
    pub.moods(synth.mood("shop-1", s) for s in range(3, 53))
    assert wait_rows(db, "rejects", len(bad)) == len(bad), col.log()
    exactly_once(db, 50)
    assert col.alive()
    reasons = [r for (r,) in rows(db, "SELECT reason FROM rejects ORDER BY id")]
    for (topic, _, want), got in zip(bad, reasons, strict=True):
        assert want in got, (topic, got)
    assert scalar(db, "SELECT max(payload_size) FROM rejects") == 300_000
    assert col.terminate() == 0


def test_device_resending_old_windows_after_a_week_offline(
        broker: Broker, db: str, tmp_path: Path) -> None:
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker)
    week_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=7)

    def window(seq: int) -> dict:
        return synth.mood("shop-1", seq, start=week_ago + timedelta(minutes=seq))

    pub.moods(window(s) for s in range(1, 101))  # delivered before the device went away
    assert wait_rows(db, "windows", 100) == 100
    # A week later the device is back; its spool re-sends from seq 50 (the broker had not
    # acknowledged those), then the windows it kept while offline, and a fresh one.
    now_window = synth.mood("shop-1", 1000, start=datetime.now(UTC).replace(microsecond=0))
    pub.moods([*(window(s) for s in range(50, 151)), now_window])
    exactly_once(db, 151)
    old = rows(db, "SELECT start_epoch, received_at FROM windows "
               "WHERE window_id = 'shop-1/00c0ffee00c0ffee/120'")
    assert old[0][0] == (week_ago + timedelta(minutes=120)).timestamp()  # its own time
    end = rows(db, "SELECT last_window_end FROM devices WHERE device_id = 'shop-1'")[0][0]
    if isinstance(end, str):  # SQLite keeps timestamps as text
        end = datetime.fromisoformat(end)
    assert end.replace(tzinfo=UTC) == datetime.fromisoformat(now_window["end"])
    assert scalar(db, "SELECT count(*) FROM rejects") == 0
    assert col.terminate() == 0
    assert "151 windows stored, 51 duplicates dropped" in col.log()
    pub.close()


def test_sigterm_while_postgres_is_down_exits_0_and_loses_nothing(
        broker: Broker, postgres_private: PostgresServer, tmp_path: Path) -> None:
    db = postgres_private.create_database("collect")
    col = CollectorProc(broker, db, tmp_path)
    pub = Publisher(broker)
    postgres_private.stop()
    pub.moods(synth.mood("shop-1", s) for s in range(1, 101))
    assert wait_until(lambda: "database unavailable" in col.log(), 30), col.log()
    assert col.terminate(timeout=30) == 0
    assert "left unacknowledged for the broker to redeliver" in col.log()
    postgres_private.start()
    col.start()  # the same session: the broker redelivers what was never acknowledged
    assert wait_rows(db, "windows", 100) == 100, col.log()
    exactly_once(db, 100)
    assert col.terminate() == 0
    pub.close()


def test_a_broker_that_lost_the_session_is_reported(mosquitto: Broker, tmp_path: Path) -> None:
    """A broker without persistence forgets sessions on restart: windows sent meanwhile
    were never queued, and the collector's log says so instead of staying silent."""
    col = CollectorProc(mosquitto, f"sqlite:///{tmp_path}/c.db", tmp_path)
    mosquitto.kill()
    mosquitto.start()
    assert wait_until(lambda: "had lost this collector's session" in col.log(), 30), col.log()
    assert col.terminate() == 0
