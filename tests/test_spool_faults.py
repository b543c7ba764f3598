"""Spool faults never kill the daemon: injected sqlite errors, a failing delete after
PUBACK, and a real full file system (a 256 KiB tmpfs) under a running daemon."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config import parse_config
from device.mqtt import MqttPublisher
from device.payloads import validate_mood
from device.spool import Spool
from device.windowstore import WindowStore
from tests import mqtt_samples as samples
from tests.broker import Broker, Subscriber, wait_until
from tests.daemonproc import (
    DEV,
    NotifySocket,
    daemon,
    finish,
    moods,
    start,
    terminate,
    write_config,
)

FULL = "SELECT RAISE(ABORT, 'database or disk is full')"


def fail(spool: Spool, event: str, table: str) -> None:
    spool._db.execute(f"CREATE TRIGGER fail_{event.lower()}_{table} BEFORE {event} ON "
                      f"{table} BEGIN {FULL}; END")


def heal(spool: Spool) -> None:
    for (name,) in spool._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        spool._db.execute(f"DROP TRIGGER {name}")


def store(spool: Spool) -> WindowStore:
    return WindowStore(spool, "boot-1", 3600.0, now=lambda: 0.0)


def test_a_failing_spool_queues_windows_and_numbers_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        ws = store(spool)
        first = samples.numbered(samples.mood(), ws.allocate(), spool.stream)
        fail(spool, "INSERT", "windows")
        fail(spool, "UPDATE", "meta")
        with caplog.at_level(logging.ERROR):
            assert ws.store(first, None)
            numbers = [ws.allocate() for _ in range(3)]  # windows keep opening
            for n in numbers:
                ws.store(samples.numbered(samples.mood(), n, spool.stream), None)
            ws.retry(force=True)
        assert numbers == [2, 3, 4]
        assert ws.waiting == 4 and spool.depth() == 0
        assert ws.fault == "database or disk is full"
        # One line per change of cause, not one per window or retry.
        assert len([r for r in caplog.records if "disk is full" in r.message]) <= 2
        assert ws.counts()["depth"] == 4
        heal(spool)
        ws.retry(force=True)
        assert ws.fault is None and ws.waiting == 0
        assert [q for q, _ in spool.pending()] == [1, 2, 3, 4]
        assert ws.allocate() == 5 and spool.next_seq() == 6  # numbers were recorded


def test_a_checkpoint_not_yet_recovered_is_never_overwritten(tmp_path: Path) -> None:
    """The disk is full at start: the last run's checkpoint cannot be spooled yet, so the
    next checkpoint must not replace it; it is recovered once the spool writes again."""
    with Spool(tmp_path / "s.sqlite") as spool:
        w = samples.numbered(samples.mood(), spool.allocate(), spool.stream)
        spool.checkpoint([({**w, "recovered": True}, None)])
    with Spool(tmp_path / "s.sqlite") as spool:
        ws = store(spool)
        fail(spool, "INSERT", "windows")
        assert ws.recover() == [] and ws.fault == "database or disk is full"
        ws.checkpoint([])
        heal(spool)
        ws.checkpoint([])
        assert [(q, p["recovered"]) for q, p in spool.pending()] == [(1, True)]


def test_status_names_the_spool_fault_and_clears_it(model_dir: Path, tmp_path: Path) -> None:
    """The retained status (status/2) says degraded with the real cause while the spool
    cannot write, and is healthy again once it can."""
    from device.daemon import Daemon
    from device.payloads import validate_status

    cfg = parse_config({"device_id": DEV, "camera": {"source": "sample"},
                        "model": {"dir": str(model_dir)},
                        "spool": {"path": str(tmp_path / "spool.sqlite")},
                        "mqtt": {"enabled": False}, "clock": {"trust": "always"}})
    d = Daemon(cfg)
    d.start()
    try:
        assert d.grabber is not None and d.pipeline is not None and d.spool is not None
        frame = None
        while frame is None:
            frame = d.grabber.get(timeout=1.0)
        d.pipeline.process(frame.image, frame.ts)
        fail(d.spool, "INSERT", "windows")
        d.pipeline.close(d.clock.monotonic())  # the window closes: it cannot be spooled
        d._tick_clock(d.clock.monotonic())
        s = d.status()
        validate_status(s)
        assert s["state"] == "degraded"
        assert s["faults"] == {"spool": "database or disk is full"}
        assert s["spool"]["depth"] == 1  # waiting in memory
        heal(d.spool)
        assert d.store is not None
        d.store.retry(force=True)
        d._tick_clock(d.clock.monotonic())
        s = d.status()
        validate_status(s)
        assert s["state"] == "running" and s["faults"] == {}
        assert [q for q, _ in d.spool.pending()] == [1]
    finally:
        d.shutdown()


def test_an_invalid_window_is_rejected_not_fatal(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        ws = store(spool)
        bad = samples.numbered(samples.mood(), ws.allocate(), spool.stream)
        bad["end"] = bad["start"]
        with caplog.at_level(logging.ERROR):
            assert ws.store(bad, None) is False
        (line,) = [r.getMessage() for r in caplog.records]
        assert "rejected, kept aside, not published" in line and "\n" not in line
        assert spool.rejected_count == 1 and spool.depth() == 0
        good = samples.numbered(samples.mood(), ws.allocate(), spool.stream)
        assert ws.store(good, None) and [q for q, _ in spool.pending()] == [2]


@pytest.mark.broker
def test_a_failing_delete_after_puback_never_resends(mosquitto: Broker,
                                                     tmp_path: Path) -> None:
    cfg = parse_config({"device_id": DEV, "mqtt": {"port": mosquitto.port,
                                                   "host": "127.0.0.1"}})
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    with Spool(tmp_path / "s.sqlite") as spool:
        pub = MqttPublisher(cfg.mqtt, cfg.campaign, DEV, spool)
        pub.start()
        assert wait_until(lambda: pub.connected, timeout=10)
        fail(spool, "DELETE", "windows")
        for i in range(3):
            pub.submit_window(samples.mood(minute=i))
        assert wait_until(lambda: pub.ack_fault is not None, timeout=10)
        assert "database or disk is full" in (pub.ack_fault or "")
        for _ in range(10):  # the worker runs many times; nothing is sent again
            pub.wake()
            wait_until(lambda: False, timeout=0.1)
        assert sub.wait_for(lambda: len(moods(sub)) >= 3, timeout=5)
        assert sorted(m["seq"] for m in moods(sub)) == [1, 2, 3]
        heal(spool)
        pub.wake()
        assert wait_until(lambda: spool.depth() == 0 and pub.ack_fault is None, timeout=10)
        pub.stop(3)
    assert sorted(m["seq"] for m in moods(sub)) == [1, 2, 3]
    sub.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}); CI runs as root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Take every free block of the file system."""
    try:
        with path.open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


@pytest.mark.timeout(150)
@pytest.mark.parametrize("full_at_start", [False, True])
def test_a_full_disk_degrades_then_recovers_without_loss(
        model_dir: Path, tmp_path: Path, tiny_fs: Path, full_at_start: bool) -> None:
    """The spool's file system fills up under a running daemon, or is full when it
    starts (no broker, so windows accumulate): it keeps running (no crash loop), says why
    (log, sd_notify STATUS, status faults), keeps the windows in memory and spools them,
    numbered without a gap, once space returns."""
    cfg = write_config(tmp_path / "c.toml", model_dir, None)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "spool.sqlite"),
                                           str(tiny_fs / "spool.sqlite"))
                   .replace("window_s = 2", "window_s = 1")
                   + "status_interval_s = 1\n")  # into [mqtt], the last section
    if full_at_start:
        rc, _, err = finish(start(cfg, "--duration", "3"), timeout=60)
        assert rc == 0, err
        fill(tiny_fs / "filler")
    notify = NotifySocket(tmp_path / "notify.sock")
    full = "faults: spool: database or disk is full"
    try:
        with daemon(cfg, "--json", env=notify.env(watchdog_s=30)) as p:
            assert wait_until(lambda: "READY=1" in notify.text(), timeout=40), p.stderr
            if not full_at_start:
                wait_until(lambda: False, timeout=2)
                fill(tiny_fs / "filler")
            assert wait_until(lambda: any(full in ln for ln in notify.text()), timeout=60)
            assert p.poll() is None
            n = len(notify.text())
            (tiny_fs / "filler").unlink()
            assert wait_until(lambda: any(ln.startswith("STATUS=") and "faults" not in ln
                                          for ln in notify.text()[n:]), timeout=30)
            wait_until(lambda: False, timeout=2)
            rc, out, err = terminate(p)
    finally:
        notify.close()
    assert rc == 0 and "Traceback" not in err, err
    assert "database or disk is full; windows wait in memory" in err
    assert "works again" in err
    printed = [json.loads(line) for line in out.splitlines()]
    with Spool(tiny_fs / "spool.sqlite") as spool:
        spooled = [w for _, w in spool.pending(10_000)]
    for w in spooled:
        validate_mood(w)
    # Every window the daemon closed is spooled once, numbered without a gap.
    assert [w["seq"] for w in spooled] == list(range(1, len(spooled) + 1))
    assert [w["window_id"] for w in spooled[-len(printed):]] == [
        w["window_id"] for w in printed]
