"""The report's SQL: every sum is a GROUP BY in the database, so the rows that reach Python
grow with campaigns x devices x hours, not with windows.

A cell is (content_id, device_id, hour), hour = floor(start_epoch / 3600): a window counts
in the clock hour it started in. Portable SQLAlchemy Core for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    and_,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.sql import ColumnElement, FromClause, Select

from analyst import schema

W = schema.windows
L = schema.window_labels

# Dwell histogram resolution (seconds) and the last bin (everything longer lands there).
DWELL_BIN_S = 0.5
DWELL_CAP_S = 300.0
UNKNOWN_HOUR = -1  # the hour bucket of windows stamped by an unsynced clock


@dataclass(frozen=True)
class Filters:
    """Which windows the report covers (None: no limit)."""

    since: float | None = None  # UTC epoch seconds, inclusive, on the window start
    until: float | None = None  # exclusive
    devices: tuple[str, ...] = ()

    def where(self, src: FromClause) -> ColumnElement[bool]:
        conds: list[ColumnElement[bool]] = [true()]
        if self.since is not None:
            conds.append(src.c.start_epoch >= self.since)
        if self.until is not None:
            conds.append(src.c.start_epoch < self.until)
        if self.devices:
            conds.append(src.c.device_id.in_(self.devices))
        return and_(*conds)


def hour_bucket(conn: Connection, src: FromClause) -> ColumnElement[Any]:
    # PostgreSQL rounds when casting a double to an integer; floor() is exact there.
    # SQLite's floor() exists only when built with math functions; CAST truncates, which
    # is floor for the non-negative epochs stored here.
    # A window whose clock was never confirmed may be stamped hours or years off: its
    # hour is unknown (UNKNOWN_HOUR), so it counts for its campaign and device but in no
    # hour, timeline or device-hour comparison.
    bucket = (cast(src.c.start_epoch / 3600, BigInteger) if conn.dialect.name == "sqlite"
              else func.floor(src.c.start_epoch / 3600))
    return case((src.c.clock == "unsynced", UNKNOWN_HOUR), else_=bucket)


@dataclass(frozen=True)
class Cell:
    content_id: str | None
    device_id: str
    hour: int
    windows: int
    shown_s: float
    viewers: int
    dwell_total: float
    dwell_count: int
    dead_windows: int  # frames = 0: the camera delivered nothing
    unsynced: int  # windows whose clock was never confirmed
    recovered: int


def cells(conn: Connection, f: Filters, src: FromClause = W) -> Iterator[Cell]:
    w = src.c
    hour = hour_bucket(conn, src).label("hour")
    q = (select(w.content_id, w.device_id, hour, func.count(), func.sum(w.duration_s),
                func.sum(w.viewers_total), func.coalesce(func.sum(w.dwell_total), 0.0),
                func.sum(w.dwell_count),
                func.sum(case((w.frames == 0, 1), else_=0)),
                func.sum(case((w.clock == "unsynced", 1), else_=0)),
                func.sum(case((w.recovered, 1), else_=0)))
         .select_from(src).where(f.where(src))
         .group_by(w.content_id, w.device_id, literal_column("hour")))
    for r in conn.execute(q):
        yield Cell(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5]), float(r[6]),
                   int(r[7]), int(r[8]), int(r[9]), int(r[10]))


def labels(conn: Connection) -> list[str]:
    """Every label in window_labels, by a loose index scan (one index probe per distinct
    label, not a scan of all rows): the columns of the pivot in label_cells."""
    q = text("""
        WITH RECURSIVE t(l) AS (
            SELECT min(label) FROM window_labels
            UNION ALL
            SELECT (SELECT min(label) FROM window_labels WHERE label > t.l)
            FROM t WHERE t.l IS NOT NULL)
        SELECT l FROM t WHERE l IS NOT NULL""")
    return [r[0] for r in conn.execute(q)]


def label_cells(conn: Connection, f: Filters, src: FromClause = W,
                ) -> Iterator[tuple[str | None, str, int, dict[str, int]]]:
    """(content_id, device_id, hour, {label: viewers}): the labels pivoted into one row per
    cell in SQL, so Python reads as many rows as cells() gives, not labels times more."""
    names = labels(conn)
    if not names:
        return
    w = src.c
    hour = hour_bucket(conn, src).label("hour")
    sums = [func.sum(case((L.c.label == name, L.c.viewers), else_=0)) for name in names]
    q: Select[Any] = (
        select(w.content_id, w.device_id, hour, *sums)
        .select_from(L.join(src, L.c.window_id == w.window_id))
        .where(f.where(src), L.c.viewers > 0)
        .group_by(w.content_id, w.device_id, literal_column("hour")))
    for r in conn.execute(q):
        yield r[0], r[1], int(r[2]), {n: int(v) for n, v in zip(names, r[3:], strict=True) if v}


def dwell_bins(conn: Connection, f: Filters, by: str,
               src: FromClause = W) -> Iterator[tuple[Any, float, int]]:
    """(key, bin start in s, viewers) for the windows' median dwell, weighted by the viewers
    each window counted; `by` is 'content_id', 'device_id' or 'hour'. The device publishes
    per-window dwell statistics, not each viewer's: this is the distribution the report can
    give without per-person data."""
    w = src.c
    key = hour_bucket(conn, src) if by == "hour" else w[by]
    capped = case((w.dwell_median >= DWELL_CAP_S, DWELL_CAP_S / DWELL_BIN_S),
                  else_=w.dwell_median / DWELL_BIN_S)
    b = (cast(capped, BigInteger) if conn.dialect.name == "sqlite"
         else func.floor(capped))
    q = (select(key.label("k"), b.label("b"), func.sum(w.dwell_count)).select_from(src)
         .where(f.where(src), w.dwell_count > 0)
         .group_by(literal_column("k"), literal_column("b")))
    for r in conn.execute(q):
        yield r[0] if by != "hour" else int(r[0]), int(r[1]) * DWELL_BIN_S, int(r[2])


def span(conn: Connection, f: Filters, src: FromClause = W) -> tuple[float | None,
                                                                     float | None]:
    """First start and last end (epoch s) of the windows with a confirmed clock."""
    w = src.c
    q = (select(func.min(w.start_epoch), func.max(w.end_epoch)).select_from(src)
         .where(f.where(src), w.clock != "unsynced"))
    row = conn.execute(q).one()
    return (None if row[0] is None else float(row[0]),
            None if row[1] is None else float(row[1]))


def timeline(conn: Connection, f: Filters, step_s: int, src: FromClause = W,
             ) -> Iterator[tuple[str | None, int, int]]:
    """(content_id, bucket, viewers): viewers per `step_s` seconds of window start, for
    windows with a confirmed clock (bucket * step_s is the bucket's start, epoch s)."""
    w = src.c
    b = (cast(w.start_epoch / step_s, BigInteger) if conn.dialect.name == "sqlite"
         else func.floor(w.start_epoch / step_s))
    q = (select(w.content_id, b.label("b"), func.sum(w.viewers_total)).select_from(src)
         .where(f.where(src), w.clock != "unsynced")
         .group_by(w.content_id, literal_column("b")))
    for r in conn.execute(q):
        yield r[0], int(r[1]), int(r[2])


@dataclass(frozen=True)
class StreamSpan:
    device_id: str
    stream: str
    windows: int
    first_seq: int
    last_seq: int

    @property
    def missing(self) -> int:
        """Windows never received between the first and last one seen (lost, or in flight)."""
        return self.last_seq - self.first_seq + 1 - self.windows


def streams(conn: Connection, f: Filters) -> list[StreamSpan]:
    q = (select(W.c.device_id, W.c.stream, func.count(), func.min(W.c.seq), func.max(W.c.seq))
         .where(f.where(W)).group_by(W.c.device_id, W.c.stream))
    return [StreamSpan(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in conn.execute(q)]


def rejects_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(schema.rejects)).scalar() or 0)


def devices(conn: Connection) -> list[dict[str, Any]]:
    d = schema.devices
    q = select(d.c.device_id, d.c.availability, d.c.camera_state, d.c.fps, d.c.spool_depth,
               d.c.model_version, d.c.last_window_end).order_by(d.c.device_id)
    return [dict(r._mapping) for r in conn.execute(q)]
