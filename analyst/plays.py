"""Proof-of-play: attribute windows to content from a player's export of what it played.

Players that cannot announce live (no now-playing bridge) can often export their plays
afterwards (Xibo's proof-of-play statistics, Yodeck's CSV). moodcam-report --plays FILE
reads them in one plain format (docs/report.md "Proof of play"):

    device_id,content_id,start,end
    shop-1,summer-sale,2026-11-24T07:00:00Z,2026-11-24T07:00:15Z

A window WITHOUT a content id takes the content of the play that covers more than half
of it on the same device; windows with a content id keep it (a live announcement beats an
export), and windows no play covers by half stay without one. Plays of one device must
not overlap (the file is refused, naming both lines).
"""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Double,
    MetaData,
    Table,
    Text,
    and_,
    case,
    func,
    select,
)
from sqlalchemy.sql import Subquery

from analyst import schema

REQUIRED = ("device_id", "content_id", "start", "end")
MAX_CONTENT_ID = 256


@dataclass(frozen=True)
class Play:
    device_id: str
    content_id: str
    start: float  # UTC epoch seconds, inclusive
    end: float  # exclusive
    line: int


def _time(text: str, where: str) -> float:
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise ValueError(f"{where}: {text!r} has no UTC offset (write ...Z or +01:00)")
    return t.timestamp()


def read_plays(path: Path) -> list[Play]:
    """The plays in a CSV file; ValueError naming the file and line on any problem."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"--plays {path}: {e.strerror}") from None
    plays: list[Play] = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"--plays {path}: no column {', '.join(missing)} in the header "
                             f"(needs {','.join(REQUIRED)})")
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                content = (row["content_id"] or "").strip()
                device = (row["device_id"] or "").strip()
                if not device or not content:
                    raise ValueError(f"{where}: empty device_id or content_id")
                if len(content) > MAX_CONTENT_ID or not content.isprintable():
                    raise ValueError(f"{where}: content_id longer than {MAX_CONTENT_ID} "
                                     "characters or with control characters")
                start, end = _time(row["start"] or "", where), _time(row["end"] or "", where)
                if end <= start:
                    raise ValueError(f"{where}: end is not after start")
                plays.append(Play(device, content, start, end, reader.line_num))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"--plays {path}: not a readable CSV file ({e})") from None
    by_device: dict[str, list[Play]] = defaultdict(list)
    for p in plays:
        by_device[p.device_id].append(p)
    for ps in by_device.values():
        ps.sort(key=lambda p: p.start)
        for a, b in itertools.pairwise(ps):
            if b.start < a.end:
                raise ValueError(f"{path}: plays on lines {a.line} and {b.line} overlap on "
                                 f"device {a.device_id}")
    return plays


def load(conn: Connection, plays: list[Play]) -> Table:
    """The plays as a temporary table on this connection (gone when it closes)."""
    table = Table("moodcam_plays", MetaData(),
                  Column("device_id", Text, nullable=False),
                  Column("content_id", Text, nullable=False),
                  Column("start_epoch", Double, nullable=False),
                  Column("end_epoch", Double, nullable=False),
                  prefixes=["TEMPORARY"])
    table.create(conn)
    if plays:
        conn.execute(table.insert(), [
            {"device_id": p.device_id, "content_id": p.content_id, "start_epoch": p.start,
             "end_epoch": p.end} for p in plays])
    return table


def attributed(plays: Table) -> Subquery:
    """The windows, with a missing content id taken from the play covering over half."""
    w, p = schema.windows.c, plays.c
    overlap = (case((p.end_epoch < w.end_epoch, p.end_epoch), else_=w.end_epoch)
               - case((p.start_epoch > w.start_epoch, p.start_epoch), else_=w.start_epoch))
    join = schema.windows.outerjoin(plays, and_(
        w.content_id.is_(None), p.device_id == w.device_id,
        p.start_epoch < w.end_epoch, p.end_epoch > w.start_epoch,
        2 * overlap > w.end_epoch - w.start_epoch))
    cols = [c for c in schema.windows.c if c.name != "content_id"]
    return (select(*cols, func.coalesce(w.content_id, p.content_id).label("content_id"))
            .select_from(join).subquery("w"))
