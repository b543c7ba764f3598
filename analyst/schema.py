"""The analyst database's tables (the contract between the collector, the report and Grafana).

SQLAlchemy Core table objects, one definition for SQLite and PostgreSQL. Times are stored twice:
as timestamps (timestamptz in PostgreSQL) for people and Grafana, and as UTC epoch seconds
(start_epoch/end_epoch, DOUBLE) for portable arithmetic such as hour buckets
(floor(start_epoch / 3600)), which SQLite and PostgreSQL spell the same way.

This module describes the newest schema version; analyst/migrations.py brings a database to it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

metadata = MetaData()

TS = DateTime(timezone=True)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
AUTO_ID = BigInteger().with_variant(Integer(), "sqlite")

# Rejected payloads are kept for diagnosis up to this many bytes (the full size is recorded).
REJECT_PAYLOAD_CAP = 65536

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", TS, nullable=False),
)

windows = Table(
    "windows", metadata,
    # mood/2's "<device_id>/<stream>/<seq>", unique per device forever: the dedup key.
    Column("window_id", Text, primary_key=True),
    Column("schema", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("start_ts", TS, nullable=False),
    Column("end_ts", TS, nullable=False),
    Column("start_epoch", Double, nullable=False),
    Column("end_epoch", Double, nullable=False),
    Column("duration_s", Double, nullable=False),
    Column("content_id", Text, nullable=True),
    Column("clock", Text, nullable=False),
    Column("recovered", Boolean, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("model_sha256", Text, nullable=False),
    Column("viewers_total", Integer, nullable=False),
    Column("detections_total", Integer, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("fps", Double, nullable=False),
    Column("dwell_count", Integer, nullable=False),
    Column("dwell_mean", Double, nullable=True),
    Column("dwell_median", Double, nullable=True),
    Column("dwell_max", Double, nullable=True),
    Column("dwell_total", Double, nullable=True),
    # The exact JSON text received, so nothing the device said is lost to the columns.
    Column("raw", Text, nullable=False),
    Column("received_at", TS, nullable=False),
)
Index("windows_content_start", windows.c.content_id, windows.c.start_epoch)
Index("windows_device_start", windows.c.device_id, windows.c.start_epoch)
Index("windows_start", windows.c.start_epoch)

window_labels = Table(
    "window_labels", metadata,
    Column("window_id", Text, ForeignKey("windows.window_id", ondelete="CASCADE"),
           primary_key=True),
    Column("label", Text, primary_key=True),
    Column("viewers", Integer, nullable=False),
    Column("detections", Integer, nullable=False),
    Column("mean_confidence", Double, nullable=True),
)
Index("window_labels_label", window_labels.c.label)

devices = Table(
    "devices", metadata,
    Column("device_id", Text, primary_key=True),
    Column("availability", Text, nullable=True),  # 'online' / 'offline' / 'stopped'
    Column("availability_at", TS, nullable=True),
    Column("status_raw", Text, nullable=True),
    Column("status_at", TS, nullable=True),  # when the collector received it
    Column("state", Text, nullable=True),
    Column("camera_state", Text, nullable=True),
    Column("camera_frames", BigInteger, nullable=True),
    Column("fps", Double, nullable=True),
    Column("spool_depth", Integer, nullable=True),
    Column("spool_dropped", Integer, nullable=True),
    Column("model_version", Text, nullable=True),
    Column("software_version", Text, nullable=True),
    Column("content_id", Text, nullable=True),
    Column("clock_synchronized", Boolean, nullable=True),
    Column("faults", Text, nullable=True),  # JSON object {component: line}, '{}' when healthy
    Column("last_window_end", TS, nullable=True),
    Column("last_window_at", TS, nullable=True),  # when the collector stored its latest window
)

rejects = Table(
    "rejects", metadata,
    Column("id", AUTO_ID, primary_key=True, autoincrement=True),
    Column("received_at", TS, nullable=False),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # at most REJECT_PAYLOAD_CAP bytes
    Column("payload_size", Integer, nullable=False),
)
Index("rejects_received", rejects.c.received_at)
