"""The analyst database: migrations, the table contract, idempotent batch writes, devices.

Every test runs against SQLite and a real PostgreSQL (tests/pg.py), through the same code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text

from analyst import migrations, schema
from analyst.collect import parse, synth
from analyst.db import Store, connect, default_db_path, engine_url

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)

# The columns analyst reports and dashboards rely on (docs/analysts.md, notes' DB contract).
CONTRACT = {
    "windows": {"window_id", "device_id", "stream", "seq", "start_ts", "end_ts", "start_epoch",
                "end_epoch", "duration_s", "content_id", "clock", "recovered", "model_name",
                "model_version", "model_sha256", "viewers_total", "detections_total",
                "frames", "fps", "dwell_count", "dwell_mean", "dwell_median", "dwell_max",
                "dwell_total", "raw", "received_at"},
    "window_labels": {"window_id", "label", "viewers", "detections", "mean_confidence"},
    "devices": {"device_id", "availability", "availability_at", "status_raw", "status_at",
                "state", "camera_state", "fps", "spool_depth", "model_version",
                "clock_synchronized", "last_window_end"},
    "rejects": {"id", "received_at", "topic", "reason", "payload"},
    "schema_version": {"version", "applied_at"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/analyst.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return connect(db_url)


def rec(payload: dict, kind: str = "mood", at: datetime = NOW) -> parse.Record:
    return parse.parse(f"moodcam/{payload['device_id']}/{kind}", synth.encode(payload),
                       "moodcam", at)


def count(engine: Engine, table: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_migrate_from_empty_creates_the_contract_and_rerunning_is_a_noop(db_url: str) -> None:
    engine = connect(db_url)
    cols = {t: {c["name"] for c in inspect(engine).get_columns(t)} for t in CONTRACT}
    for table, wanted in CONTRACT.items():
        assert wanted <= cols[table], f"{table} lacks {wanted - cols[table]}"
    Store(engine).write([rec(synth.mood(seq=1))])
    assert migrations.migrate(engine) == migrations.LATEST
    again = connect(db_url)  # a second collector starting on the same database
    with again.connect() as c:
        versions = c.execute(select(schema.schema_version.c.version)).scalars().all()
    assert versions == [step[0] for step in migrations.STEPS]
    assert count(again, "windows") == 1  # migrating again kept the data


def test_a_database_newer_than_the_software_is_refused(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(schema.schema_version.insert().values(
            version=migrations.LATEST + 1, description="from the future", applied_at=NOW))
    with pytest.raises(RuntimeError, match="newer than this moodcam"):
        migrations.migrate(engine)


def test_windows_are_stored_once_with_columns_labels_and_raw_json(engine: Engine) -> None:
    store = Store(engine)
    first = synth.mood("shop-1", 1, viewers={"happy": 3, "sad": 1})
    batch = [rec(first), rec(synth.mood("shop-1", 2)), rec(first)]  # a copy in the batch
    r = store.write(batch)
    assert (r.new, r.duplicates, r.rejected) == (2, 1, 0)
    r = store.write([rec(first)])  # the spool's at-least-once re-send, later
    assert (r.new, r.duplicates, r.rejected) == (0, 1, 0)
    assert count(engine, "windows") == 2
    with engine.connect() as c:
        row = c.execute(select(schema.windows).where(
            schema.windows.c.window_id == first["window_id"])).mappings().one()
        labels = dict(c.execute(select(schema.window_labels.c.label,
                                       schema.window_labels.c.viewers).where(
            schema.window_labels.c.window_id == first["window_id"])).all())
    assert row["raw"] == synth.encode(first).decode()
    assert (row["device_id"], row["seq"], row["viewers_total"]) == ("shop-1", 1, 4)
    assert row["start_epoch"] == datetime(2026, 11, 24, 7, tzinfo=UTC).timestamp()
    assert row["duration_s"] == 60.0 and row["recovered"] is False
    assert labels == {"happy": 3, "sad": 1, "neutral": 0, "unknown": 0}


def test_a_different_window_under_a_stored_id_is_rejected_not_merged(engine: Engine) -> None:
    store = Store(engine)
    store.write([rec(synth.mood("shop-1", 1, content_id="promo-a"))])
    forged = synth.mood("shop-1", 1, content_id="promo-b")
    r = store.write([rec(forged)])
    assert (r.new, r.rejected) == (0, 1)
    with engine.connect() as c:
        kept = c.execute(select(schema.windows.c.content_id)).scalar_one()
        reason, topic = c.execute(select(schema.rejects.c.reason,
                                         schema.rejects.c.topic)).one()
    assert kept == "promo-a"
    assert "already stored with different content" in reason
    assert topic == "moodcam/shop-1/mood"


def test_devices_keep_the_latest_status_availability_and_window_end(engine: Engine) -> None:
    store = Store(engine)
    late = datetime(2026, 11, 24, 9, tzinfo=UTC)
    store.write([rec(synth.status("shop-1"), "status"),
                 parse.parse("moodcam/shop-1/availability", b"online", "moodcam", NOW),
                 rec(synth.mood("shop-1", 5, start=late))])
    # Then the camera dies and an old window (a re-sent backlog) arrives: last_window_end
    # must not go back in time.
    store.write([rec(synth.status("shop-1", state="degraded", camera="lost", fps=0.0,
                                  spool_depth=42), "status"),
                 rec(synth.mood("shop-1", 1)),
                 parse.parse("moodcam/shop-1/availability", b"offline", "moodcam",
                             NOW + timedelta(seconds=1))])
    with engine.connect() as c:
        d = c.execute(select(schema.devices)).mappings().one()
    assert (d["availability"], d["state"], d["camera_state"]) == ("offline", "degraded", "lost")
    assert (d["fps"], d["spool_depth"], d["model_version"]) == (0.0, 42, "2026.11.24")
    assert d["clock_synchronized"] is True
    assert d["last_window_end"].replace(tzinfo=UTC) == late + timedelta(minutes=1)


def test_rejects_keep_reason_and_a_capped_payload(engine: Engine) -> None:
    huge = b"{" + b" " * (schema.REJECT_PAYLOAD_CAP * 2)
    Store(engine).write([parse.parse("moodcam/shop-1/mood", huge, "moodcam", NOW)])
    with engine.connect() as c:
        reason, payload, size = c.execute(select(
            schema.rejects.c.reason, schema.rejects.c.payload,
            schema.rejects.c.payload_size)).one()
    assert reason.startswith("not UTF-8 JSON")
    assert len(payload) == schema.REJECT_PAYLOAD_CAP and size == len(huge)


def test_urls_and_the_default_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          ) -> None:
    assert engine_url("postgresql://u@127.0.0.1:5/db") == "postgresql+psycopg://u@127.0.0.1:5/db"
    for bad in ("mysql://x/y", "not a url", "sqlite://"):
        with pytest.raises(ValueError, match="--db"):
            engine_url(bad)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr("platformdirs.unix.Unix.user_state_dir",
                        property(lambda self: str(tmp_path / "state" / "moodcam")))
    assert default_db_path() == tmp_path / "state" / "moodcam" / "moodcam.db"
    connect(None)
    assert default_db_path().exists()


def test_json_numbers_of_either_kind_are_stored(engine: Engine) -> None:
    """JSON Schema's integer admits 2.0 and its number admits 12: one batch mixing both
    kinds (PostgreSQL's array inserts want one Python type per column) is stored whole."""
    a = synth.mood("shop-1", 1)
    b = synth.mood("shop-1", 2)
    b["viewers"]["happy"] = 2.0
    b["fps"] = 10
    b["dwell_s"].update(mean=12, median=10, max=20, total=36)
    b["mean_confidence"]["happy"] = 1
    r = Store(engine).write([rec(a), rec(b)])
    assert (r.new, r.rejected) == (2, 0)
    with engine.connect() as c:
        assert c.execute(text("SELECT sum(dwell_mean) FROM windows")).scalar_one() == 24.5


def test_collectors_starting_together_migrate_once(pg_url: str) -> None:
    """Scale-out collectors start at once against one PostgreSQL: the advisory lock makes
    each migration step run exactly once, and none of them fails."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(lambda _: connect(pg_url), range(4)))
    with engines[0].connect() as c:
        versions = c.execute(select(schema.schema_version.c.version)).scalars().all()
    assert versions == [step[0] for step in migrations.STEPS]
