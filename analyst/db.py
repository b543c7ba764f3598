"""Opening the analyst database (SQLite or PostgreSQL, one code path) and writing batches.

SQLAlchemy Core 2 with psycopg 3 for PostgreSQL: one set of table definitions and statements
for both databases; the only dialect-specific piece is the INSERT ... ON CONFLICT construct,
which both spell alike but SQLAlchemy exposes per dialect.

A batch is written in ONE transaction; the collector acknowledges its MQTT messages only after
`Store.write` returned, so a crash at any point loses nothing (the broker redelivers) and a
redelivered window is dropped by its primary key (`INSERT ... ON CONFLICT DO NOTHING`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, create_engine, event, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from analyst import schema
from analyst.migrations import migrate

log = logging.getLogger(__name__)


def default_db_path() -> Path:
    """The embedded default: an SQLite file in the user's state directory
    (~/.local/state/moodcam/moodcam.db on Linux, or under $XDG_STATE_HOME)."""
    from platformdirs import user_state_path

    return user_state_path("moodcam") / "moodcam.db"


def engine_url(url: str) -> str:
    """The SQLAlchemy URL for a user's `sqlite:///PATH` or `postgresql://...` (psycopg 3)."""
    try:
        parsed = make_url(url)
    except Exception as e:  # SQLAlchemy's ArgumentError for junk
        raise ValueError(f"--db {url!r}: not a database URL; use sqlite:///PATH or "
                         "postgresql://user@host:port/db") from e
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(
            hide_password=False)
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError(f"--db {url!r}: give the SQLite file, sqlite:///PATH")
        return url
    raise ValueError(f"--db {url!r}: unsupported database {parsed.drivername!r}; use "
                     "sqlite:///PATH or postgresql://user@host:port/db")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: the report reads while the collector writes. synchronous stays FULL (WAL's
    # default) because a message is acknowledged as soon as its commit returns.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def connect(url: str | None = None, *, migrate_schema: bool = True) -> Engine:
    """An engine for `url` (default: the SQLite file in the user's state dir), with the schema
    migrated to the latest version."""
    if url is None:
        path = default_db_path()
        url = f"sqlite:///{path}"
    real = engine_url(url)
    if real.startswith("sqlite"):
        db = make_url(real).database
        assert db is not None
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(real)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # pre_ping: after a PostgreSQL restart the pool's old connections are dead.
        engine = create_engine(real, pool_pre_ping=True, pool_size=2,
                               connect_args={"connect_timeout": 5})
    if migrate_schema:
        migrate(engine)
    return engine


@dataclass
class WindowRecord:
    window_id: str
    row: dict[str, Any]  # the windows columns
    labels: list[dict[str, Any]]  # the window_labels rows
    topic: str = ""


@dataclass
class StatusRecord:
    device_id: str
    row: dict[str, Any]  # devices columns from a status payload


@dataclass
class AvailabilityRecord:
    device_id: str
    availability: str
    at: datetime


@dataclass
class RejectRecord:
    topic: str
    reason: str
    payload: bytes  # capped at schema.REJECT_PAYLOAD_CAP
    received_at: datetime
    size: int = 0  # of the whole payload


Record = WindowRecord | StatusRecord | AvailabilityRecord | RejectRecord


@dataclass
class WriteResult:
    new: int = 0  # windows stored for the first time
    duplicates: int = 0  # identical copies of stored windows, dropped
    rejected: int = 0  # rows added to rejects
    new_ids: list[str] = field(default_factory=list)


def reject(topic: str, reason: str, payload: bytes, at: datetime) -> RejectRecord:
    return RejectRecord(topic=topic, reason=reason[:1000],
                        payload=payload[:schema.REJECT_PAYLOAD_CAP], received_at=at,
                        size=len(payload))


def _insert(conn: Connection, table: Any) -> Any:
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    return mod.insert(table)


def _insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]],
                key: str | None) -> set[Any]:
    """INSERT ... ON CONFLICT DO NOTHING; returns the `key` of the rows actually inserted.

    PostgreSQL gets one statement whose columns are arrays (INSERT ... SELECT FROM unnest):
    measured 3x the rate of SQLAlchemy's multi-row VALUES through psycopg, whose parsing of
    a 13,500-parameter statement dominated (docs/analysts.md, benchmark)."""
    if conn.dialect.name != "postgresql":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
        if key is None:
            conn.execute(stmt, rows)
            return set()
        return set(conn.execute(stmt.returning(table.c[key]), rows).scalars())
    cols = [c for c in table.columns if c.name in rows[0]]
    arrays = ", ".join(f"%b::{c.type.compile(dialect=conn.dialect)}[]" for c in cols)
    sql = (f"INSERT INTO {table.name} ({', '.join(c.name for c in cols)}) "
           f"SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING")
    if key is not None:
        sql += f" RETURNING {key}"
    params = [[r[c.name] for r in rows] for c in cols]
    # psycopg directly, on the transaction's own connection, for binary parameters: the
    # text format escapes every quote of every raw JSON, which cost more than the insert.
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(sql, params, binary=True)
        return {r[0] for r in cur.fetchall()} if key is not None else set()


class Store:
    """Writes batches of parsed messages into the database, one transaction per batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[Record]) -> WriteResult:
        with self.engine.begin() as conn:
            return self.write_in(conn, records)

    def write_in(self, conn: Connection, records: Sequence[Record]) -> WriteResult:
        result = WriteResult()
        rejects = [r for r in records if isinstance(r, RejectRecord)]
        first: dict[str, WindowRecord] = {}
        for r in records:
            if not isinstance(r, WindowRecord):
                continue
            if r.window_id not in first:
                first[r.window_id] = r
            elif r.row["raw"] != first[r.window_id].row["raw"]:
                rejects.append(self._conflict(r))
            else:
                result.duplicates += 1
        # Sorted keys: two collectors (or a re-sending device) lock rows in one order,
        # so concurrent batches cannot deadlock on each other.
        wins = [first[k] for k in sorted(first)]
        if wins:
            inserted = _insert_new(conn, schema.windows, [w.row for w in wins], "window_id")
            old = [w for w in wins if w.window_id not in inserted]
            if old:
                found = conn.execute(
                    select(schema.windows.c.window_id, schema.windows.c.raw).where(
                        schema.windows.c.window_id.in_([w.window_id for w in old])))
                stored = {wid: raw for wid, raw in found}
                for w in old:
                    if stored.get(w.window_id) == w.row["raw"]:
                        result.duplicates += 1
                    else:
                        rejects.append(self._conflict(w))
            new = [w for w in wins if w.window_id in inserted]
            labels = [lab for w in new for lab in w.labels]
            if labels:
                _insert_new(conn, schema.window_labels, labels, None)
            result.new = len(new)
            result.new_ids = [w.window_id for w in new]
            self._device_windows(conn, new)
        self._device_status(conn, [r for r in records if isinstance(r, StatusRecord)])
        self._device_availability(
            conn, [r for r in records if isinstance(r, AvailabilityRecord)])
        if rejects:
            conn.execute(schema.rejects.insert(), [
                {"received_at": r.received_at, "topic": r.topic, "reason": r.reason,
                 "payload": r.payload[:schema.REJECT_PAYLOAD_CAP],
                 "payload_size": r.size} for r in rejects])
        result.rejected = len(rejects)
        return result

    @staticmethod
    def _conflict(w: WindowRecord) -> RejectRecord:
        return reject(w.topic,
                      f"window_id {w.window_id!r} already stored with different content",
                      w.row["raw"].encode(), w.row["received_at"])

    @staticmethod
    def _device_windows(conn: Connection, new: list[WindowRecord]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for w in new:
            d = latest.setdefault(w.row["device_id"], {
                "device_id": w.row["device_id"], "last_window_end": w.row["end_ts"],
                "last_window_at": w.row["received_at"]})
            d["last_window_end"] = max(d["last_window_end"], w.row["end_ts"])
        if not latest:
            return
        t = schema.devices
        stmt = _insert(conn, t)
        stmt = stmt.on_conflict_do_update(index_elements=["device_id"], set_={
            "last_window_end": case(
                (or_(t.c.last_window_end.is_(None),
                     t.c.last_window_end < stmt.excluded.last_window_end),
                 stmt.excluded.last_window_end), else_=t.c.last_window_end),
            "last_window_at": stmt.excluded.last_window_at})
        conn.execute(stmt, [latest[k] for k in sorted(latest)])

    @staticmethod
    def _device_status(conn: Connection, statuses: list[StatusRecord]) -> None:
        last = {s.device_id: s.row for s in statuses}  # the latest received wins
        if not last:
            return
        stmt = _insert(conn, schema.devices)
        cols = [c for c in next(iter(last.values())) if c != "device_id"]
        stmt = stmt.on_conflict_do_update(index_elements=["device_id"],
                                          set_={c: stmt.excluded[c] for c in cols})
        conn.execute(stmt, [last[k] for k in sorted(last)])

    @staticmethod
    def _device_availability(conn: Connection, avail: list[AvailabilityRecord]) -> None:
        last = {a.device_id: a for a in avail}
        if not last:
            return
        stmt = _insert(conn, schema.devices)
        stmt = stmt.on_conflict_do_update(index_elements=["device_id"], set_={
            "availability": stmt.excluded.availability,
            "availability_at": stmt.excluded.availability_at})
        conn.execute(stmt, [{"device_id": k, "availability": last[k].availability,
                             "availability_at": last[k].at} for k in sorted(last)])
