"""Faults inside a running `moodcam run`: SIGTERM while a window awaits its PUBACK, and
the Pi camera absent at start, unplugged and plugged back in."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.payloads import validate_mood, validate_status
from device.spool import Spool
from tests.broker import Broker, HoldingProxy, Subscriber
from tests.daemonproc import (
    DEV,
    ROOT,
    NotifySocket,
    daemon,
    finish,
    moods,
    statuses,
    terminate,
    write_config,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]


def test_sigterm_while_a_window_awaits_its_puback_loses_nothing(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    proxy = HoldingProxy(mosquitto)  # the daemon reaches the broker through it
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    cfg = write_config(tmp_path / "c.toml", model_dir, proxy.port)
    try:
        with daemon(cfg, "--json") as p:
            assert sub.wait_for(lambda: len(moods(sub)) >= 1, timeout=40), p.stderr
            proxy.hold()  # from here the broker's PUBACKs never reach the daemon
            time.sleep(0.5)  # a PUBACK already on its way may still get through
            n = len(moods(sub))
            # A window reached the broker, so its PUBLISH is in flight, unacknowledged.
            assert sub.wait_for(lambda: len(moods(sub)) > n, timeout=20)
            t0 = time.monotonic()
            rc, out, err = terminate(p)
            stop_s = time.monotonic() - t0
        assert rc == 0 and "Traceback" not in err, err
        assert stop_s < 15  # systemd's TimeoutStopSec is 30
        assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability")[-1:] == [b"stopped"])
        first = [json.loads(line) for line in out.splitlines()]
        unacked = {m["seq"] for m in moods(sub)[n:]}
        with Spool(tmp_path / "spool.sqlite") as spool:
            pending = {seq for seq, _ in spool.pending()}
        # Everything the broker never acknowledged, the final window included, is still
        # spooled; everything acknowledged is gone from the spool.
        assert unacked and first[-1]["seq"] in unacked
        assert unacked <= pending <= {m["seq"] for m in first}, (pending, unacked)

        proxy.release()
        with daemon(cfg, "--json", "--duration", "3") as p2:
            rc2, out2, err2 = finish(p2, timeout=60)
        assert rc2 == 0, err2
        second = [json.loads(line) for line in out2.splitlines()]
        every = {m["seq"] for m in first + second}
        assert sub.wait_for(lambda: {m["seq"] for m in moods(sub)} >= every, timeout=20)
        # Re-sent windows are byte-for-byte duplicates a subscriber drops by window_id.
        by_id: dict[str, list[dict[str, Any]]] = {}
        for m in moods(sub):
            validate_mood(m)
            by_id.setdefault(m["window_id"], []).append(m)
        assert all(all(c == copies[0] for c in copies) for copies in by_id.values())
        assert sorted(every) == list(range(1, len(every) + 1))
        assert [m["seq"] for m in second] == sorted(m["seq"] for m in second)
        assert min(m["seq"] for m in second) > max(m["seq"] for m in first)
        with Spool(tmp_path / "spool.sqlite") as spool:
            assert spool.depth() == 0
    finally:
        proxy.close()
        sub.close()


FAKE_PICAMERA2 = '''
"""A Pi camera whose cable can be pulled: unplugged while the file $FAKE_UNPLUGGED exists."""
import os
import time

import numpy as np

_FRAME = np.load(os.environ["FAKE_FRAME"])
_UNPLUGGED = os.environ["FAKE_UNPLUGGED"]


def _plugged():
    return not os.path.exists(_UNPLUGGED)


class Picamera2:
    def __init__(self, num=0):
        if not _plugged():
            raise IndexError("list index out of range")  # what picamera2 says: no camera

    @staticmethod
    def global_camera_info():
        return [{"Model": "imx708", "Num": 0}] if _plugged() else []

    def create_video_configuration(self, **kw):
        return kw

    def configure(self, config):
        w, h = config["main"]["size"]
        assert (w, h) == (_FRAME.shape[1], _FRAME.shape[0])

    def start(self):
        pass

    def capture_array(self, name="main"):
        time.sleep(0.05)
        if not _plugged():
            raise RuntimeError("Camera frontend has timed out!")
        return _FRAME.copy()

    def stop(self):
        pass

    def close(self):
        pass
'''


def fake_pi_camera(tmp_path: Path, astronaut_bgr: np.ndarray) -> tuple[dict[str, str], Path]:
    """The environment that makes `picamera2` the fake above, and the file whose existence
    means "unplugged"."""
    fake = tmp_path / "fakecam"
    fake.mkdir()
    (fake / "picamera2.py").write_text(FAKE_PICAMERA2)
    np.save(tmp_path / "frame.npy", cv2.resize(astronaut_bgr, (640, 480)))
    unplugged = tmp_path / "unplugged"
    return ({"PYTHONPATH": f"{fake}{os.pathsep}{ROOT}", "FAKE_FRAME": str(tmp_path / "frame.npy"),
             "FAKE_UNPLUGGED": str(unplugged)}, unplugged)


def pi_camera_config(cfg: Path) -> Path:
    cfg.write_text(cfg.read_text().replace(
        'source = "sample"', 'source = "picamera"\nretry_initial_s = 0.2\nretry_max_s = 0.8'))
    return cfg


def test_pi_camera_absent_at_start_then_unplugged_mid_run_degrades_and_recovers(
        mosquitto: Broker, model_dir: Path, tmp_path: Path,
        astronaut_bgr: np.ndarray) -> None:
    env, unplugged = fake_pi_camera(tmp_path, astronaut_bgr)
    cfg = pi_camera_config(write_config(tmp_path / "c.toml", model_dir, mosquitto.port))
    notify = NotifySocket(tmp_path / "notify.sock")
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])

    def last() -> dict[str, Any]:
        s = statuses(sub)
        return s[-1] if s else {}

    def camera_state() -> str | None:
        return last().get("camera", {}).get("state")

    unplugged.touch()  # no camera at start: the daemon runs anyway
    try:
        with daemon(cfg, env={**notify.env(watchdog_s=1.0), **env}) as p:
            assert sub.wait_for(lambda: len(moods(sub)) >= 2, timeout=40)
            assert p.poll() is None and "READY=1" in notify.text()
            s = last()
            assert s["state"] == "degraded" and s["camera"]["state"] in ("retrying", "lost")
            assert "cannot open Pi camera 0" in s["faults"]["camera"]
            assert all(m["frames"] == 0 for m in moods(sub))
            unplugged.unlink()  # plugged in: frames flow, the fault clears
            assert sub.wait_for(lambda: any(m["frames"] > 0 and m["detections_total"] > 0
                                            for m in moods(sub)), timeout=20)
            assert sub.wait_for(lambda: last().get("state") == "running", timeout=10)
            assert last()["faults"] == {} and camera_state() == "ok"
            unplugged.touch()
            t_unplug = time.monotonic()
            assert sub.wait_for(lambda: camera_state() in ("retrying", "lost"), timeout=10)
            assert last()["state"] == "degraded" and "camera" in last()["faults"]
            n = len(moods(sub))
            # Windows keep closing while the camera is gone, saying no frames came.
            assert sub.wait_for(lambda: sum(m["frames"] == 0 for m in moods(sub)[n:]) >= 2,
                                timeout=15)
            assert p.poll() is None
            unplugged.unlink()
            t_replug = time.monotonic()
            assert sub.wait_for(lambda: camera_state() == "ok", timeout=15)
            n = len(moods(sub))
            assert sub.wait_for(lambda: any(m["frames"] > 0 for m in moods(sub)[n:]),
                                timeout=15)
            time.sleep(1.5)
            rc, _, err = terminate(p)
    finally:
        notify.close()
        sub.close()
    assert rc == 0 and "Traceback" not in err, err
    assert "Pi camera stopped delivering frames" in err
    assert "is not available" in err  # said once at start
    for m in moods(sub):
        validate_mood(m)
    for s in statuses(sub):
        validate_status(s)
    # The watchdog watches the main loop, not the camera: pings go on while unplugged.
    pings = [t for t, line in notify.lines if line == "WATCHDOG=1"]
    assert len([t for t in pings if t_unplug + 1.0 < t < t_replug]) >= 2
