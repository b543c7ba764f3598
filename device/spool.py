"""The window spool: every finished window is on disk before anyone tries to publish it.

A window is deleted only once the broker has acknowledged it (PUBACK), so a broker
outage or a restart loses nothing. `synchronous=FULL` in WAL mode makes each commit
durable before it returns.

Identity: the spool draws a random `stream` id when its database is created (a new SD
card, a wiped or corrupt spool gives a new stream) and hands out sequence numbers
within it (`allocate`, durable at once, never reused), so "<device>/<stream>/<seq>" is
unique forever. A window's seq is taken when it OPENS: a window lost in a crash before
its first checkpoint leaves a gap.

Tables besides `windows`: `checkpoint` (the open and held windows as they would be
published now; a window leaves it when it is spooled; at the next start what is left
becomes windows with recovered: true), `rejected` (payloads that failed validation,
the newest 100, never published); `device.spooldb` holds the schema and the opening.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from device.aggregate import iso
from device.payloads import PayloadError, validate_mood
from device.spooldb import connect, info, meta, move_aside

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_REJECTED = 100

class Hold(NamedTuple):
    """Held until the clock synchronises: restamped from [mono_start, mono_end) of boot."""

    boot: str
    mono_start: float
    mono_end: float
    since: float  # monotonic time the hold began


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


class Spool:
    """A bounded, persistent FIFO of window payloads keyed by sequence number."""

    def __init__(self, path: str | Path, max_windows: int = 100_000) -> None:
        if max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self.path = Path(path)
        self.max_windows = max_windows
        self.rejected_count = 0  # since this process opened the spool
        self._lock = threading.Lock()
        self._db = self._open_or_recover()
        self.stream: str = self._run(lambda db: info(db, "stream"))

    # --- opening, and surviving a corrupt file ---

    def _open_or_recover(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return connect(self.path)
        except sqlite3.OperationalError:
            # Permissions, a full disk or a lock are not corruption: moving the file
            # aside would throw away good windows, so let the caller report it.
            raise
        except sqlite3.DatabaseError as e:
            return self._recover(e)

    def _recover(self, err: Exception) -> sqlite3.Connection:
        """Start a fresh spool in place of a corrupt one: a new stream, so the restarted
        seq numbers cannot collide with the old ones."""
        move_aside(self.path, err)
        db = connect(self.path)
        if hasattr(self, "stream"):
            self.stream = info(db, "stream")
        return db

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(db) in one write transaction. A failed COMMIT (disk full) may already have
        ended the transaction: roll back only if one is active, so the real error is
        the one raised, not "cannot rollback - no transaction is active"."""
        def run(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error as e:
                        log.debug("rollback failed: %s", e)
                raise
            return result
        return self._run(run)

    # --- identity ---

    def allocate(self) -> int:
        """The next sequence number, durable when it returns (a window opens)."""
        def tx(db: sqlite3.Connection) -> int:
            seq = meta(db, "next_seq")
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            return seq
        return self._tx(tx)

    def release(self, seq: int) -> None:
        """Give back a number whose window was dropped unpublished (a zero-length
        sliver), if no later number was handed out: so no false gap shows."""
        self._tx(lambda db: db.execute(
            "UPDATE meta SET value = ? WHERE key = 'next_seq' AND value = ?", (seq, seq + 1)))

    def reserve_through(self, seq: int) -> None:
        """Make sure no later allocate() returns seq or below (numbers handed out while
        the disk could not record them)."""
        self._tx(lambda db: db.execute(
            "UPDATE meta SET value = MAX(value, ?) WHERE key = 'next_seq'", (seq + 1,)))

    # --- the API ---

    def _reject(self, payload: dict[str, Any], err: Exception) -> None:
        self.rejected_count += 1
        try:
            text = json.dumps(payload, default=repr, separators=(",", ":"))
        except ValueError:
            text = repr(payload)

        def tx(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO rejected (payload, error, created) VALUES (?, ?, ?)",
                       (text, str(err)[:2000], time.time()))
            db.execute("DELETE FROM rejected WHERE id NOT IN "
                       "(SELECT id FROM rejected ORDER BY id DESC LIMIT ?)", (MAX_REJECTED,))
        try:
            self._tx(tx)
        except sqlite3.Error as e:
            log.warning("could not keep the rejected window aside: %s", e)

    def put(self, payload: dict[str, Any], hold: Hold | None = None) -> int:
        """Validate and store a window (its "seq" set by allocate); return the seq.

        A payload that fails validation is kept aside in `rejected` and PayloadError is
        raised. Durable when it returns. When the spool is full the oldest windows are
        dropped and counted in `dropped()`.
        """
        try:
            validate_mood(payload)
            try:
                text = _dumps(payload)
            except ValueError as e:  # NaN or infinity: valid to the schema, not JSON
                raise PayloadError(f"invalid mood payload: {e}") from None
        except PayloadError as e:
            self._reject(payload, e)
            raise
        seq = int(payload["seq"])

        def tx(db: sqlite3.Connection) -> int:
            db.execute(
                "INSERT OR REPLACE INTO windows (seq, payload, created, held, boot, mono_start,"
                " mono_end, held_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, text, time.time(), 1 if hold else 0, hold.boot if hold else None,
                 hold.mono_start if hold else None, hold.mono_end if hold else None,
                 hold.since if hold else None))
            db.execute("DELETE FROM checkpoint WHERE seq = ?", (seq,))
            return self._trim(db)

        excess = self._tx(tx)
        if excess > 0:
            log.warning("spool full (%d windows): dropped the oldest %d", self.max_windows,
                        excess)
        return seq

    def _trim(self, db: sqlite3.Connection) -> int:
        count = db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        excess = int(count) - self.max_windows
        if excess > 0:
            db.execute("DELETE FROM windows WHERE seq IN "
                       "(SELECT seq FROM windows ORDER BY seq LIMIT ?)", (excess,))
            db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
        return excess

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` unacknowledged windows not held, oldest first, as (seq, payload)."""
        rows = self._run(lambda db: db.execute(
            "SELECT seq, payload FROM windows WHERE held = 0 ORDER BY seq LIMIT ?",
            (limit,)).fetchall())
        return [(int(seq), json.loads(text)) for seq, text in rows]

    def ack(self, seq: int) -> None:
        """Forget a window the broker has acknowledged (unknown seqs are ignored)."""
        self._tx(lambda db: db.execute("DELETE FROM windows WHERE seq = ?", (seq,)))

    # --- crash checkpoints ---

    def checkpoint(self, windows: Iterable[tuple[dict[str, Any], Hold | None]]) -> None:
        """Replace the checkpoint with these windows (as they would be published now)."""
        rows = [(int(p["seq"]), _dumps(p), 1 if h else 0, h.boot if h else None,
                 h.mono_start if h else None, h.mono_end if h else None) for p, h in windows]

        def tx(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM checkpoint")
            db.executemany("INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._tx(tx)

    def recover(self) -> list[int]:
        """At start: turn what the last run left in the checkpoint into windows (it died
        without spooling them); returns their seqs."""
        rows = self._run(lambda db: db.execute(
            "SELECT seq, payload, held, boot, mono_start, mono_end FROM checkpoint "
            "ORDER BY seq").fetchall())
        done = []
        for seq, text, held, boot, m0, m1 in rows:
            payload = json.loads(text)
            hold = Hold(boot, m0, m1, time.monotonic()) if held else None
            try:
                self.put(payload, hold)
                done.append(int(seq))
            except PayloadError as e:
                log.error("recovered window %s rejected: %s", seq, e)
                self._forget_checkpoint(int(seq))
        return done

    def _forget_checkpoint(self, seq: int) -> None:
        self._tx(lambda db: db.execute("DELETE FROM checkpoint WHERE seq = ?", (seq,)))

    # --- windows held until the clock synchronises ---

    def release_held(self, boot: str, offset: float | None, expired_before: float
                     ) -> int:
        """Publish held windows: those of `boot` restamped with `offset` (wall minus
        monotonic) when given; those of another boot, or held since before
        `expired_before` (monotonic), as clock "unsynced". Returns how many."""
        rows = self._run(lambda db: db.execute(
            "SELECT seq, payload, boot, mono_start, mono_end, held_since FROM windows "
            "WHERE held = 1 ORDER BY seq").fetchall())
        changed = []
        for seq, text, b, m0, m1, since in rows:
            payload = json.loads(text)
            if b == boot and offset is not None and m0 is not None and m1 is not None:
                payload.update(start=iso(m0 + offset), end=iso(m1 + offset),
                               clock="restamped")
                if payload["frames"]:
                    payload["fps"] = round(payload["frames"] / max(m1 - m0, 1e-9), 2)
            elif b == boot and since is not None and since >= expired_before:
                continue
            else:
                payload["clock"] = "unsynced"
            try:
                validate_mood(payload)
                if datetime.fromisoformat(payload["end"]) <= datetime.fromisoformat(
                        payload["start"]):
                    raise PayloadError("end not after start")
            except PayloadError as e:
                log.error("held window %s cannot be restamped (%s): published as it was",
                          seq, e)
                payload = {**json.loads(text), "clock": "unsynced"}
            changed.append((_dumps(payload), int(seq)))
        if changed:
            self._tx(lambda db: db.executemany(
                "UPDATE windows SET payload = ?, held = 0 WHERE seq = ?", changed))
        return len(changed)

    def compact(self) -> None:
        """Fold the write-ahead log into the database and truncate it: on a small file
        system a grown WAL alone can fill the disk."""
        self._run(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    # --- counters ---

    def depth(self) -> int:
        """Windows waiting for an acknowledgement (held ones included)."""
        return int(self._run(
            lambda db: db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]))

    def held(self) -> int:
        """Windows held until the clock synchronises."""
        return int(self._run(lambda db: db.execute(
            "SELECT COUNT(*) FROM windows WHERE held = 1").fetchone()[0]))

    def dropped(self) -> int:
        """Windows dropped because the spool was full, since the spool was created."""
        return self._run(lambda db: meta(db, "dropped"))

    def rejected(self) -> list[tuple[str, str]]:
        """The windows kept aside as invalid, newest first: (payload text, error)."""
        rows = self._run(lambda db: db.execute(
            "SELECT payload, error FROM rejected ORDER BY id DESC").fetchall())
        return [(str(p), str(e)) for p, e in rows]

    def next_seq(self) -> int:
        """The sequence number the next `allocate` will return."""
        return self._run(lambda db: meta(db, "next_seq"))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
