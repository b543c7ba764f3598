"""The window spool: durable, ordered, bounded, validating; numbers within a random
stream are never reused."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from device.payloads import PayloadError
from device.spool import Hold, Spool
from tests import mqtt_samples as samples

ROOT = Path(__file__).resolve().parent.parent


def window(s: Spool, **kw: Any) -> dict[str, Any]:
    """A valid window numbered by the spool, as the daemon makes them."""
    return samples.numbered(samples.mood(**kw), s.allocate(), s.stream)


def put(s: Spool, **kw: Any) -> int:
    return s.put(window(s, **kw))


def test_put_pending_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        assert re.fullmatch("[0-9a-f]{16}", s.stream)
        a, b = window(s, minute=1), window(s, minute=2)
        assert s.put(a) == 1 and s.put(b) == 2
        assert s.pending(10) == [(1, a), (2, b)]
        assert s.pending(1) == [(1, a)]
        s.ack(1)
        s.ack(1)  # twice (a duplicate PUBACK) is harmless
        s.ack(99)
        assert s.depth() == 1 and [q for q, _ in s.pending()] == [2]


def test_survives_reopen_and_never_reuses_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        stream = s.stream
        for i in range(3):
            put(s, minute=i)
        s.ack(3)  # the newest is gone: its number must still never come back
        s.ack(2)
        assert s.allocate() == 4  # a window opened, then the process died: 4 is a gap
    with Spool(path) as s:
        assert s.stream == stream
        assert [(q, p["start"]) for q, p in s.pending()] == [(1, "2026-11-24T07:00:00Z")]
        assert put(s) == 5
        s.ack(1)
        s.ack(5)
    with Spool(path) as s:
        assert s.depth() == 0 and put(s) == 6


def test_a_new_spool_draws_a_new_stream(tmp_path: Path) -> None:
    """A wiped or replaced SD card: numbers restart at 1 in a new stream, so the window
    ids ("<device>/<stream>/<seq>") never repeat."""
    with Spool(tmp_path / "a.sqlite") as a:
        first = window(a)
    (tmp_path / "a.sqlite").unlink()
    with Spool(tmp_path / "a.sqlite") as a:
        again = window(a)
    assert first["seq"] == again["seq"] == 1
    assert first["window_id"] != again["window_id"]


def test_allocate_is_durable_when_it_returns(tmp_path: Path) -> None:
    """A process killed right after allocate()/put() (no close, no atexit) keeps both."""
    path = tmp_path / "s.sqlite"
    code = ("import os, sys; from device.spool import Spool; from tests import mqtt_samples;"
            " s = Spool(sys.argv[1]); n = s.allocate(); "
            "print(s.put(mqtt_samples.numbered(mqtt_samples.mood(), n, s.stream)), "
            "s.allocate(), flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.split() == ["1", "2"]
    with Spool(path) as s:
        assert [q for q, _ in s.pending()] == [1] and s.allocate() == 3


def test_bounded_drops_oldest_and_counts_persistently(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    with caplog.at_level(logging.WARNING), Spool(path, max_windows=3) as s:
        for i in range(5):
            put(s, minute=i)
        assert s.depth() == 3 and s.dropped() == 2
        assert [q for q, _ in s.pending()] == [3, 4, 5]
    assert "spool full" in caplog.text
    with Spool(path, max_windows=2) as s:  # a smaller limit applies at the next put
        put(s)
        assert [q for q, _ in s.pending()] == [5, 6] and s.dropped() == 4


def test_invalid_windows_are_kept_aside_never_spooled(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        bad = window(s)
        bad["viewers_total"] = 99
        with pytest.raises(PayloadError, match="viewers_total"):
            s.put(bad)
        nan = window(s)
        nan["fps"] = float("nan")
        with pytest.raises(PayloadError):
            s.put(nan)
        assert s.depth() == 0 and s.rejected_count == 2
        kept = s.rejected()
        assert len(kept) == 2 and "viewers_total" in kept[1][1]
        assert json.loads(kept[1][0])["viewers_total"] == 99
        for _ in range(120):
            with pytest.raises(PayloadError):
                s.put(bad)
        assert len(s.rejected()) == 100  # bounded: the newest 100


def test_checkpoint_is_replaced_and_recovered_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        a, b = window(s), window(s)
        s.checkpoint([({**a, "recovered": True}, None), ({**b, "recovered": True}, None)])
        s.put(a)  # a finished normally: it leaves the checkpoint
        assert s.recover() == [2]
        assert s.recover() == []
        assert [(q, p["recovered"]) for q, p in s.pending()] == [(1, False), (2, True)]


def test_held_windows_wait_and_are_restamped_or_flagged(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        a, b, c = window(s), window(s), window(s)
        s.put({**a, "clock": "unsynced"}, Hold("boot-1", 100.0, 160.0, 5.0))
        s.put({**b, "clock": "unsynced"}, Hold("boot-0", 10.0, 70.0, 5.0))
        s.put(c)
        assert [q for q, _ in s.pending()] == [3] and s.held() == 2
        # Still unsynchronised, hold not expired: only the earlier boot's goes, flagged.
        assert s.release_held("boot-1", None, expired_before=0.0) == 1
        assert [(q, p["clock"]) for q, p in s.pending()] == [(2, "unsynced"), (3, "synced")]
        # Synchronised: wall = monotonic + offset.
        assert s.release_held("boot-1", 1_795_000_000.0, expired_before=0.0) == 1
        (_, p), = [x for x in s.pending() if x[0] == 1]
        assert p["clock"] == "restamped"
        assert (p["start"], p["end"]) == ("2026-11-18T11:08:20Z", "2026-11-18T11:09:20Z")
        assert s.held() == 0


def test_rollback_failure_never_hides_the_real_error(tmp_path: Path) -> None:
    """SQLite ends the transaction itself on some errors (a full disk): the caller sees
    the real cause, not "cannot rollback - no transaction is active"."""
    with Spool(tmp_path / "s.sqlite") as s:
        w = window(s)
        # RAISE(ROLLBACK) ends the transaction the way SQLITE_FULL can.
        s._db.execute("CREATE TRIGGER boom BEFORE INSERT ON windows "
                      "BEGIN SELECT RAISE(ROLLBACK, 'database or disk is full'); END")
        with pytest.raises(sqlite3.Error, match="database or disk is full"):
            s.put(w)
        assert not s._db.in_transaction


def test_corrupt_file_is_moved_aside_and_a_new_stream_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        for i in range(3):
            put(s, minute=i)
        old = s.stream
    path.write_bytes(b"this is not a database" + os.urandom(4096))
    with caplog.at_level(logging.ERROR), Spool(path) as s:
        assert s.depth() == 0
        assert s.stream != old and put(s) == 1
    aside = list(tmp_path.glob("s.sqlite.corrupt-*"))
    assert aside and aside[0].read_bytes().startswith(b"this is not a database")
    assert "moved it to" in caplog.text


def test_truncated_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        for i in range(200):
            put(s, minute=i % 60)
        old = s.stream
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Spool(path) as s:
        assert s.stream != old
    assert list(tmp_path.glob("s.sqlite.corrupt-*"))


def test_unwritable_location_is_an_error_not_a_reset(tmp_path: Path) -> None:
    blocker = tmp_path / "dir-not-file"
    blocker.mkdir()
    with pytest.raises(sqlite3.OperationalError):
        Spool(blocker)
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_thread_safe(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        got: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(25):
                seq = put(s)
                with lock:
                    got.append(seq)
                s.pending(5)
                s.depth()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == list(range(1, 101)) and s.depth() == 100

        def acker(seqs: list[int]) -> None:
            for q in seqs:
                s.ack(q)

        halves = [got[::2], got[1::2]]
        threads = [threading.Thread(target=acker, args=(h,)) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.depth() == 0
