"""`moodcam run` as a real process: a real mosquitto, signals, sd_notify, the unit file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device.notify import Notifier, watchdog_interval
from device.payloads import validate_mood, validate_status
from device.spool import Spool
from tests.broker import Broker, Subscriber, free_port
from tests.daemonproc import (
    DEV,
    ROOT,
    NotifySocket,
    daemon,
    finish,
    moods,
    start,
    terminate,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.broker
def test_sigterm_publishes_the_final_window_and_stopped(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    with daemon(write_config(tmp_path / "c.toml", model_dir, mosquitto.port), "--json") as p:
        assert sub.wait_for(lambda: len(moods(sub)) >= 2, timeout=40), p.stderr
        assert sub.on(f"moodcam/{DEV}/availability")[0] == b"online"
        t0, t_term = time.monotonic(), time.time()
        rc, out, err = terminate(p)
    assert rc == 0, err
    assert time.monotonic() - t0 < 15
    assert "Traceback" not in err
    assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability")[-1:] == [b"stopped"])
    printed = [json.loads(line) for line in out.splitlines()]
    got = moods(sub)
    # Every window the daemon closed, including the partial one at SIGTERM, arrived once.
    assert [m["window_id"] for m in got] == [m["window_id"] for m in printed]
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
    for m in got:
        validate_mood(m)
    # The window open at SIGTERM was closed then, not left for the next start.
    end = datetime.fromisoformat(got[-1]["end"]).timestamp()
    assert abs(end - t_term) < 3
    statuses = [json.loads(s) for s in sub.on(f"moodcam/{DEV}/status")]
    for s in statuses:
        validate_status(s)
    assert statuses[0]["state"] == "running" and statuses[-1]["state"] == "stopping"
    assert statuses[-1]["camera"]["frames"] > 0
    assert Spool(tmp_path / "spool.sqlite").depth() == 0
    sub.close()


@pytest.mark.broker
def test_sighup_with_a_broken_model_keeps_running(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port)
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    with daemon(cfg) as p:
        assert sub.wait_for(lambda: len(moods(sub)) >= 1, timeout=40)
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "manifest.json").write_text("{}")
        write_config(cfg, broken, mosquitto.port)
        p.send_signal(signal.SIGHUP)
        n = len(moods(sub))
        assert sub.wait_for(lambda: len(moods(sub)) >= n + 2, timeout=20)  # still working
        assert p.poll() is None
        # A valid config again (a new window length): reloaded for real.
        write_config(cfg, model_dir, mosquitto.port)
        cfg.write_text(cfg.read_text().replace("window_s = 2", "window_s = 3")
                       .replace("max_fps = 5.0", "max_fps = 4.0"))  # reopens the camera
        p.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        rc, _, err = terminate(p)
    assert rc == 0, err
    assert "reload failed, keeping the running config and model: model:" in err
    assert "reloaded: model" in err
    assert err.count("camera sample:astronaut") == 2
    for m in moods(sub):
        validate_mood(m)


@pytest.mark.broker
def test_campaign_content_tags_and_splits_windows(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    topic = "signage/screen-1/now_playing"
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port,
                       campaign=f'[campaign]\ntopic = "{topic}"\n')
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    sub.client.publish(topic, "promo-42", qos=1, retain=True).wait_for_publish(5)
    with daemon(cfg) as p:
        assert sub.wait_for(lambda: any(m["content_id"] == "promo-42" for m in moods(sub)),
                            timeout=40)
        sub.client.publish(topic, json.dumps({"content_id": "promo-43"}), qos=1)
        sub.client.publish(topic, b"\xff not utf-8", qos=1)  # ignored, logged
        assert sub.wait_for(lambda: any(m["content_id"] == "promo-43" for m in moods(sub)),
                            timeout=20)
        rc, _, err = terminate(p)
    assert rc == 0, err
    got = moods(sub)
    for m in got:
        validate_mood(m)
    assert len({m["window_id"] for m in got}) == len(got)
    ids = [m["content_id"] for m in got]
    # Tagged in order of announcement; the switch splits a window rather than mixing.
    assert ids.index("promo-42") < ids.index("promo-43")
    assert ids[ids.index("promo-43"):] == ["promo-43"] * (len(ids) - ids.index("promo-43"))


@pytest.mark.broker
def test_kill_9_leaves_the_last_will_offline(mosquitto: Broker, model_dir: Path,
                                             tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port)
    cfg.write_text(cfg.read_text() + "keepalive_s = 5\n")
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/availability"])
    with daemon(cfg) as p:
        assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability") == [b"online"],
                            timeout=40)
        p.kill()
        p.communicate(timeout=10)
        # No DISCONNECT was sent: the broker publishes the will (at once on the closed
        # socket, or after 1.5 x keepalive if the host vanished).
        assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability")[-1] == b"offline",
                            timeout=15)
    sub.close()


def test_broker_absent_at_start_spools_windows(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    p = start(write_config(tmp_path / "c.toml", model_dir, port), "--duration", "5",
              "--json")
    rc, out, err = finish(p, timeout=60)
    assert rc == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) >= 2
    with Spool(tmp_path / "spool.sqlite") as spool:
        assert [seq for seq, _ in spool.pending()] == [w["seq"] for w in printed]


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_ready_watchdog_stopping(model_dir: Path, tmp_path: Path,
                                           abstract: bool) -> None:
    notify = NotifySocket(None if abstract else tmp_path / "notify.sock")
    try:
        rc, _, err = finish(start(write_config(tmp_path / "c.toml", model_dir, None),
                                  "--duration", "4", env=notify.env()), timeout=40)
        time.sleep(0.3)
    finally:
        notify.close()
    assert rc == 0, err
    lines = notify.text()
    assert "READY=1" in lines and "WATCHDOG=1" in lines and "STOPPING=1" in lines
    assert lines.index("READY=1") < lines.index("WATCHDOG=1") < lines.index("STOPPING=1")
    assert any(ln.startswith("STATUS=") for ln in lines)


def test_notifier_is_a_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False and n.watchdog() is False
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None  # the watchdog is for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0


def test_a_camera_source_naming_nothing_is_one_line_and_nonzero(model_dir: Path,
                                                               tmp_path: Path) -> None:
    # A typo, not an absent camera (that one is retried: tests/test_daemon_camera.py).
    cfg = write_config(tmp_path / "c.toml", model_dir, None)
    cfg.write_text(cfg.read_text().replace('source = "sample"', 'source = "/no/such/dir"'))
    rc, _, err = finish(start(cfg), timeout=60)
    assert rc == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("moodcam")]
    assert line.startswith("moodcam: error: camera: camera source '/no/such/dir': no such")
    assert "Traceback" not in err


def test_unreadable_password_file_is_one_line_and_exit_2(model_dir: Path,
                                                         tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", model_dir, 1883)
    cfg.write_text(cfg.read_text() + f'username = "moodcam"\npassword_file = '
                   f'"{tmp_path / "missing-password"}"\n')
    rc, _, err = finish(start(cfg), timeout=60)
    assert rc == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("moodcam")]
    assert "mqtt.password_file" in line and "Traceback" not in err


def test_run_without_config_prints_windows(model_dir: Path, tmp_path: Path) -> None:
    """A fresh machine: no config, no camera, no broker -> windows on stdout."""
    if not (ROOT / "models" / "manifest.json").exists():
        pytest.skip("needs the shipped model in models/ (run without --config uses it)")
    p = start(None, "--duration", "4", env={"XDG_STATE_HOME": str(tmp_path)})
    rc, out, err = finish(p, timeout=60)
    assert rc == 0, err
    windows = [json.loads(line) for line in out.splitlines()]
    assert windows and all(w["frames"] > 0 for w in windows[:-1])
    assert {w["clock"] for w in windows} == {"synced"}  # a desktop's clock is trusted
    assert (tmp_path / "moodcam" / "spool.sqlite").exists()


def test_unit_file_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "systemd" / "moodcam.service").read_text()
    assert "ExecStart=/opt/moodcam/venv/bin/moodcam run --config /etc/moodcam/moodcam.toml" \
        in text
    for key in ("Type=notify", "WatchdogSec=", "NotifyAccess=main", "User=moodcam",
                "SupplementaryGroups=video", "StateDirectory=moodcam",
                "ConfigurationDirectory=moodcam", "ProtectSystem=strict",
                "NoNewPrivileges=yes", "PrivateTmp=yes", "DevicePolicy=closed",
                "DeviceAllow=char-video4linux", "Restart=on-failure",
                "ExecReload=/bin/kill -HUP $MAINPID"):
        assert key in text, key
    # Verify a copy whose binary exists here, so every other check runs for real.
    exe = Path(sys.executable).with_name("moodcam")
    if not exe.exists():
        exe = Path(shutil.which("true") or "/bin/true")
    unit = tmp_path / "moodcam.service"
    unit.write_text(text.replace("/opt/moodcam/venv/bin/moodcam", str(exe)))
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr


@pytest.mark.broker
@pytest.mark.timeout(180)
def test_windows_survive_a_broker_restart_end_to_end(
        mosquitto_persistent: Broker, model_dir: Path, tmp_path: Path) -> None:
    """`moodcam run` -> broker killed for several windows -> restarted: none lost."""
    broker = mosquitto_persistent
    sub = Subscriber(broker, [f"moodcam/{DEV}/mood"], persistent=True, client_id="analyst-e2e")
    with daemon(write_config(tmp_path / "c.toml", model_dir, broker.port), "--json") as p:
        assert sub.wait_for(lambda: len(moods(sub)) >= 2, timeout=40), p.stderr
        broker.kill()
        time.sleep(5)  # about two 2 s windows close while the broker is away
        broker.start()
        n_before_stop = len(moods(sub))
        assert sub.wait_for(lambda: len(moods(sub)) >= n_before_stop + 3, timeout=40)
        rc, out, err = terminate(p)
    assert rc == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sub.wait_for(lambda: {m["seq"] for m in moods(sub)} >= {m["seq"] for m in printed},
                        timeout=10)
    by_seq: dict[int, dict[str, Any]] = {}
    for m in moods(sub):
        validate_mood(m)
        assert by_seq.setdefault(m["seq"], m) == m  # duplicates allowed, identical
    assert sorted(by_seq) == list(range(1, len(printed) + 1))
    assert [by_seq[m["seq"]]["window_id"] for m in printed] == [m["window_id"] for m in printed]
    assert Spool(tmp_path / "spool.sqlite").depth() == 0
    sub.close()
