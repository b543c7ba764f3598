"""The window spool: every finished window is on disk before anyone tries to publish it.

A window is deleted only once the broker has acknowledged it (PUBACK), so a broker
outage, a daemon restart or a power cut loses nothing. `synchronous=FULL` in WAL mode
makes each commit durable before `put` returns. Sequence numbers live in the database
and are never reused, even after deletes, so subscribers can drop duplicates by
(device_id, seq) and spot gaps.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class Spool:
    """A bounded, persistent FIFO of window payloads keyed by sequence number."""

    def __init__(self, path: str | Path, max_windows: int = 100_000) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self.path = Path(path)
        self.max_windows = max_windows
        self._lock = threading.Lock()
        self._db = self._open_or_recover()

    # --- opening, and surviving a corrupt file ---

    def _open(self, first_seq: int) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit, so each put is one atomic commit.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row}")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', ?)", (first_seq,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
            self._meta(db, "next_seq")
            self._meta(db, "dropped")
        except BaseException:
            db.close()
            raise
        return db

    def _open_or_recover(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._open(first_seq=1)
        except sqlite3.OperationalError:
            # Permissions, a full disk or a lock are not corruption: moving the file
            # aside would throw away good windows, so let the caller report it.
            raise
        except sqlite3.DatabaseError as e:
            return self._recover(e)

    def _recover(self, err: Exception) -> sqlite3.Connection:
        """Move a corrupt spool aside (kept for forensics) and start a fresh one."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        log.error(
            "spool %s is unreadable (%s); moved it to %s and started an empty spool: "
            "windows that were waiting in it are not sent",
            self.path, err, aside,
        )
        # The old counter is lost with the file: restart well above anything it can have
        # reached (milliseconds since 1970) so (device_id, seq) stays unique for subscribers.
        return self._open(first_seq=int(time.time() * 1000))

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise sqlite3.DatabaseError(f"meta row {key!r} missing")
        return int(row[0])

    def _run(self, fn: Any) -> Any:
        """Run fn(db) under the lock; a database that turns corrupt is replaced, once."""
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError | sqlite3.IntegrityError):
                    raise
                self._db.close()
                self._db = self._recover(e)
                return fn(self._db)

    # --- the API ---

    def put(self, payload: dict[str, Any]) -> int:
        """Store a copy of `payload` with the next sequence number in "seq"; return it.

        Durable when it returns. When the spool is full the oldest windows are dropped
        and counted in `dropped()`.
        """
        def tx(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta(db, "next_seq")
                text = json.dumps({**payload, "seq": seq}, allow_nan=False,
                                  separators=(",", ":"), ensure_ascii=False)
                db.execute("INSERT INTO windows VALUES (?, ?, ?)", (seq, text, time.time()))
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
                count = db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
                excess = count - self.max_windows
                if excess > 0:
                    db.execute(
                        "DELETE FROM windows WHERE seq IN "
                        "(SELECT seq FROM windows ORDER BY seq LIMIT ?)", (excess,))
                    db.execute(
                        "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if excess > 0:
                log.warning("spool full (%d windows): dropped the oldest %d", self.max_windows,
                            excess)
            return seq

        result: int = self._run(tx)
        return result

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` unacknowledged windows, oldest first, as (seq, payload)."""
        rows = self._run(lambda db: db.execute(
            "SELECT seq, payload FROM windows ORDER BY seq LIMIT ?", (limit,)).fetchall())
        return [(int(seq), json.loads(text)) for seq, text in rows]

    def ack(self, seq: int) -> None:
        """Forget a window the broker has acknowledged (unknown seqs are ignored)."""
        self._run(lambda db: db.execute("DELETE FROM windows WHERE seq = ?", (seq,)))

    def depth(self) -> int:
        """Windows waiting for an acknowledgement."""
        n: int = self._run(lambda db: db.execute("SELECT COUNT(*) FROM windows").fetchone()[0])
        return n

    def dropped(self) -> int:
        """Windows dropped because the spool was full, since the spool was created."""
        n: int = self._run(lambda db: self._meta(db, "dropped"))
        return n

    def next_seq(self) -> int:
        """The sequence number the next `put` will assign."""
        n: int = self._run(lambda db: self._meta(db, "next_seq"))
        return n

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
