"""SIGHUP under a running `moodcam run`: hostile config files change nothing but a fault
line, and [campaign] applies without a restart."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.payloads import validate_mood, validate_status
from tests.broker import Broker, Subscriber
from tests.daemonproc import DEV, daemon, last_status, moods, statuses, terminate, write_config

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

HOSTILE: list[tuple[bytes, str]] = [
    (b'device_id = "shop-12"\n[camera]\nsource = "\xff"\n', "is not UTF-8"),
    (b'device_id = "shop-12"\nx = ' + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b'device_id = "' + b"x" * 10_000_000 + b'"\n', "larger than 256 KiB"),
    (b'device_id = "shop-12"\n[mqtt]\nport = \n', "invalid TOML"),
    (b'device_id = "shop-12"\n[camera]\nwidth = "' + b"w" * 100_000 + b'"\n',
     "camera.width: must be an integer"),
]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_sighup_with_hostile_configs_keeps_config_model_and_window(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port)
    good = cfg.read_text()
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    try:
        with daemon(cfg) as p:
            assert sub.wait_for(lambda: len(moods(sub)) >= 1, timeout=40)
            first = len(moods(sub))
            for raw, why in HOSTILE:
                cfg.write_bytes(raw)
                p.send_signal(signal.SIGHUP)
                def refused(why: str = why) -> bool:
                    return why in last_status(sub).get("faults", {}).get("config", "")

                assert sub.wait_for(refused, timeout=15), why
                s = last_status(sub)
                assert s["state"] == "degraded" and len(s["faults"]["config"]) <= 300
                assert p.poll() is None
            n = len(moods(sub))
            assert sub.wait_for(lambda: len(moods(sub)) >= n + 1, timeout=10)  # counting on
            during = moods(sub)[first:]
            cfg.write_text(good)
            p.send_signal(signal.SIGHUP)
            assert sub.wait_for(lambda: last_status(sub).get("faults") == {}
                                and last_status(sub).get("state") == "running", timeout=20)
            rc, _, err = terminate(p)
    finally:
        sub.close()
    assert rc == 0 and "Traceback" not in err, err
    failed = [ln for ln in err.splitlines() if "reload failed" in ln]
    assert len(failed) == len(HOSTILE)  # one line per bad SIGHUP
    assert all(len(ln) < 400 for ln in failed), failed
    assert "reloaded: model" in err
    # A failed reload closed no window early: each is a whole 2 s window of frames.
    assert during and all(seconds(m["end"]) - seconds(m["start"]) == 2.0 and m["frames"] > 0
                          for m in during), during
    assert sub.on(f"moodcam/{DEV}/availability")[:-1] == [b"online"]  # then "stopped"
    got = moods(sub)
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
    for m in got:
        validate_mood(m)
    for s in statuses(sub):
        validate_status(s)


def test_reload_applies_campaign_topic_and_default_content(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    campaign = ('[campaign]\ntopic = "screen/a"\ndefault_content_id = "idle-1"\n'
                "min_segment_s = 1.0\n")
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port, campaign=campaign)
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    player = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="player-reload")
    player.connect(mosquitto.host, mosquitto.port)
    player.loop_start()

    def say(topic: str, content: str) -> None:
        player.publish(topic, content, qos=1).wait_for_publish(5)

    def shown() -> list[str | None]:
        return [m["content_id"] for m in moods(sub)]

    try:
        with daemon(cfg) as p:
            assert sub.wait_for(lambda: "idle-1" in shown(), timeout=40)
            say("screen/a", "promo-a")
            assert sub.wait_for(lambda: "promo-a" in shown(), timeout=15)
            cfg.write_text(cfg.read_text().replace('"screen/a"', '"screen/b"')
                           .replace('"idle-1"', '"idle-2"'))
            p.send_signal(signal.SIGHUP)
            # A new topic forgets the old one's content: the new default applies.
            assert sub.wait_for(lambda: "idle-2" in shown(), timeout=15)
            time.sleep(1.0)
            say("screen/a", "promo-a2")  # the old topic is no longer heard
            say("screen/b", "promo-b")
            assert sub.wait_for(lambda: "promo-b" in shown(), timeout=15)
            n = len(moods(sub))
            assert sub.wait_for(lambda: len(moods(sub)) >= n + 1, timeout=10)
            rc, _, err = terminate(p)
    finally:
        player.loop_stop()
        player.disconnect()
        sub.close()
    assert rc == 0 and "Traceback" not in err, err
    assert "reload: campaign topic screen/b, default content idle-2" in err
    ids = shown()
    assert "promo-a2" not in ids
    firsts = [ids.index(c) for c in ("idle-1", "promo-a", "idle-2", "promo-b")]
    assert firsts == sorted(firsts), ids
    assert ids[-1] == "promo-b"
    for m in moods(sub):
        validate_mood(m)
