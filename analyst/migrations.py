"""Versioned schema migrations, applied in order at connect.

The `schema_version` table holds one row per applied step. `migrate()` runs, in one
transaction, every step above the database's version; PostgreSQL's DDL is transactional and
an advisory lock serialises collectors starting at once against one database, so a step is
applied exactly once or not at all. Re-running is a no-op.

Rule for the future: a change to analyst/schema.py comes with a new step here (ALTER TABLE,
CREATE INDEX, ...); never edit a step that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select, text

from analyst import schema

log = logging.getLogger(__name__)

# Any constant: the key of the PostgreSQL advisory lock that serialises migrations.
_LOCK_KEY = 0x6D6F6F64  # "mood"


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.windows, schema.window_labels,
                                             schema.devices, schema.rejects])


STEPS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "windows, window_labels, devices, rejects", _v1_initial),
]
LATEST = STEPS[-1][0]


def current_version(conn: Connection) -> int:
    found = conn.execute(select(func.max(schema.schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(engine: Engine) -> int:
    """Bring the database to the latest version; returns it. Raises if the database is newer
    than this software (an older collector must not write into a schema it does not know)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        schema.metadata.create_all(conn, tables=[schema.schema_version])
        have = current_version(conn)
        if have > LATEST:
            raise RuntimeError(f"the database has schema version {have}, newer than this "
                               f"moodcam's {LATEST}: upgrade moodcam")
        for version, description, step in STEPS:
            if version <= have:
                continue
            log.info("migrating the database to schema version %d (%s)", version, description)
            step(conn)
            conn.execute(schema.schema_version.insert().values(
                version=version, description=description, applied_at=datetime.now(UTC)))
    return LATEST
