"""The window spool: durable, ordered, bounded, never reuses a sequence number."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device.spool import Spool

ROOT = Path(__file__).resolve().parent.parent


def test_put_pending_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        payload = {"window_id": "a", "n": 1}
        assert s.put(payload) == 1
        assert "seq" not in payload, "the caller's dict is not modified"
        assert s.put({"window_id": "b"}) == 2
        assert s.pending(10) == [(1, {"window_id": "a", "n": 1, "seq": 1}),
                                 (2, {"window_id": "b", "seq": 2})]
        assert s.pending(1) == [(1, {"window_id": "a", "n": 1, "seq": 1})]
        s.ack(1)
        s.ack(1)  # twice (a duplicate PUBACK) is harmless
        s.ack(99)
        assert s.depth() == 1 and [q for q, _ in s.pending()] == [2]


def test_survives_reopen_and_never_reuses_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        for i in range(3):
            s.put({"i": i})
        s.ack(3)  # the newest is gone: its number must still never come back
        s.ack(2)
    with Spool(path) as s:
        assert s.pending() == [(1, {"i": 0, "seq": 1})]
        assert s.put({"i": 3}) == 4
        s.ack(1)
        s.ack(4)
    with Spool(path) as s:
        assert s.depth() == 0 and s.put({}) == 5


def test_put_is_durable_when_it_returns(tmp_path: Path) -> None:
    """A process killed right after put() (no close, no atexit) keeps the window."""
    path = tmp_path / "s.sqlite"
    code = ("import os, sys; from device.spool import Spool; s = Spool(sys.argv[1]); "
            "print(s.put({'w': 1}), flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "1"
    with Spool(path) as s:
        assert s.pending() == [(1, {"w": 1, "seq": 1})]


def test_bounded_drops_oldest_and_counts_persistently(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    with caplog.at_level(logging.WARNING), Spool(path, max_windows=3) as s:
        for i in range(5):
            s.put({"i": i})
        assert s.depth() == 3 and s.dropped() == 2
        assert [q for q, _ in s.pending()] == [3, 4, 5]
    assert "spool full" in caplog.text
    with Spool(path, max_windows=2) as s:  # a smaller limit applies at the next put
        s.put({"i": 5})
        assert [q for q, _ in s.pending()] == [5, 6] and s.dropped() == 4


def test_rejects_what_json_cannot_carry(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as s:
        with pytest.raises(ValueError):
            s.put({"fps": float("nan")})
        assert s.depth() == 0 and s.put({}) == 1, "a failed put uses no number"


def test_corrupt_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        for i in range(3):
            s.put({"i": i})
    path.write_bytes(b"this is not a database" + os.urandom(4096))
    with caplog.at_level(logging.ERROR), Spool(path) as s:
        assert s.depth() == 0
        seq = s.put({"after": True})
        # Numbers continue far above anything the lost file can have used.
        assert seq > 1_000_000_000_000
    aside = list(tmp_path.glob("s.sqlite.corrupt-*"))
    assert aside and aside[0].read_bytes().startswith(b"this is not a database")
    assert "moved it to" in caplog.text


def test_truncated_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as s:
        for i in range(200):
            s.put({"i": i, "pad": "x" * 500})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Spool(path) as s:
        assert s.put({}) > 200
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
                seq = s.put({})
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
