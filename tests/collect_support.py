"""Helpers for the collector tests: a broker set up as docs/analysts.md says, the real
`moodcam-collect` as a subprocess, a QoS 1 publisher, and counting rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text

from analyst.collect import synth
from analyst.db import engine_url
from tests.broker import Broker, make_broker, wait_until

ROOT = Path(__file__).resolve().parent.parent

# What docs/analysts.md asks of mosquitto: persistent sessions that survive a restart (saved
# at a clean stop; autosave_on_changes would rewrite the whole store per message), and no
# cap on a session's queue (mosquitto's default drops a subscriber's messages past 1000).
BROKER_LINES = ["allow_anonymous true", "max_queued_messages 1000000"]


def analyst_broker(tmp: Path) -> Broker:
    store = tmp / "store"
    store.mkdir(exist_ok=True)
    b = make_broker(tmp, [*BROKER_LINES, "persistence true", f"persistence_location {store}/"])
    b.start()
    return b


class CollectorProc:
    """`moodcam-collect` in a subprocess, its log in a file."""

    def __init__(self, broker: Broker, db: str, tmp: Path, name: str = "c1",
                 *extra: str, wait: bool = True) -> None:
        self.args = [sys.executable, "-m", "analyst.collect.cli", "--mqtt",
                     f"{broker.host}:{broker.port}", "--db", db, "--client-id", name, *extra]
        self.logfile = tmp / f"collector-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(wait)

    def start(self, wait: bool = True) -> None:
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if wait:
            self.wait_connected()

    def wait_connected(self) -> None:
        assert wait_until(lambda: "connected to" in self.log(), 20), self.log()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Publisher:
    """A device-like QoS 1 publisher (the daemon's spool does the same: QoS 1, re-send)."""

    def __init__(self, broker: Broker, client_id: str = "test-device") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 1)
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.wait_connected()

    def wait_connected(self) -> None:
        assert self.connected.wait(15), "the test publisher could not (re)connect"

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.wait_connected()
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def moods(self, windows: Iterable[dict[str, Any]], prefix: str = "moodcam") -> int:
        self.wait_connected()
        infos = [self.client.publish(f"{prefix}/{w['device_id']}/mood", synth.encode(w), qos=1)
                 for w in windows]
        for info in infos:
            info.wait_for_publish(30)
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def scalar(db: str, sql: str) -> Any:
    engine = create_engine(engine_url(db))
    try:
        with engine.connect() as c:
            return c.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(engine_url(db))
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


def wait_rows(db: str, table: str, n: int, timeout: float = 60) -> int:
    """Wait until `table` has at least n rows; returns the final count."""
    def count() -> int:
        try:
            return int(scalar(db, f"SELECT count(*) FROM {table}") or 0)
        except Exception:  # not created yet, or the database is down
            return -1
    wait_until(lambda: count() >= n, timeout, step=0.1)
    return count()


def settle(db: str, table: str, seconds: float = 1.0) -> int:
    """The row count once it has not changed for `seconds` (nothing more is coming)."""
    last, since = -2, time.monotonic()
    while True:
        now = wait_rows(db, table, 0, 1)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return now
        time.sleep(0.1)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto set up as docs/analysts.md says, killed (not stopped) at the end."""
    b = analyst_broker(tmp_path)
    yield b
    b.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each collector test runs on both databases the collector supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/collect.db"
    url: str = request.getfixturevalue("pg_url")
    return url
