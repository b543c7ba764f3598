"""The spool's SQLite file: its schema, how it is opened, and what happens to one that
is corrupt. `device.spool` builds the window queue on top."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, held INTEGER NOT NULL,
    boot TEXT, mono_start REAL, mono_end REAL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, error TEXT NOT NULL,
    created REAL NOT NULL
);
"""
# Columns added to `windows` after version 1 (a v1 spool is upgraded in place).
_WINDOW_COLUMNS = {"held": "INTEGER NOT NULL DEFAULT 0", "boot": "TEXT",
                   "mono_start": "REAL", "mono_end": "REAL", "held_since": "REAL"}


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or upgrading) the spool at path; sqlite3.DatabaseError if corrupt."""
    # isolation_level=None: transactions are explicit, so each put is one atomic commit.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # One process owns the spool: the WAL index then lives in memory, no -shm file
        # is needed, so the spool still opens on a full disk (and a second daemon on
        # the same file gets "database is locked" instead of sharing it).
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # A short WAL, truncated after each checkpoint: on a small SD partition the
        # log of a few windows' commits must not be what fills the disk.
        db.execute("PRAGMA wal_autocheckpoint=16")
        db.execute("PRAGMA journal_size_limit=0")
        row = db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {row}")
        db.executescript(_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(windows)")}
        for col, decl in _WINDOW_COLUMNS.items():
            if col not in have:
                db.execute(f"ALTER TABLE windows ADD COLUMN {col} {decl}")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
        db.execute("INSERT OR IGNORE INTO info VALUES ('stream', ?)",
                   (secrets.token_hex(8),))
        meta(db, "next_seq")
        meta(db, "dropped")
        info(db, "stream")
    except BaseException:
        db.close()
        raise
    return db


def move_aside(path: Path, err: Exception) -> None:
    """Move a corrupt spool aside (kept for forensics) so a fresh one can take its place."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.replace(Path(f"{aside}{suffix}"))
    log.error(
        "spool %s is unreadable (%s); moved it to %s and started an empty spool "
        "(a new stream): windows that were waiting in it are not sent",
        path, err, aside,
    )


def meta(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise sqlite3.DatabaseError(f"meta row {key!r} missing")
    return int(row[0])


def info(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise sqlite3.DatabaseError(f"info row {key!r} missing")
    return str(row[0])
