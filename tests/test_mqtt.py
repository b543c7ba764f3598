"""The publisher against a real mosquitto: delivery, outages, last will, auth, TLS, campaigns."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.config import CampaignConfig, MqttConfig
from device.mqtt import MqttPublisher
from device.payloads import validate_mood, validate_status
from device.spool import Spool
from tests import mqtt_samples as samples
from tests.broker import Broker, Subscriber, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
DEV = "shop-12"


def mqtt_cfg(broker: Broker, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {"host": broker.host, "port": broker.port, "keepalive_s": 5,
                            "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}
    return MqttConfig.model_validate(base | kw)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.sqlite", max_windows=1000)


def make_pub(broker: Broker, spool: Spool, campaign: CampaignConfig | None = None,
             on_content: Any = None, **kw: Any) -> MqttPublisher:
    return MqttPublisher(mqtt_cfg(broker, **kw), campaign or CampaignConfig(), DEV, spool,
                         on_content)


def moods(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.on(f"moodcam/{DEV}/mood")]


def seqs(sub: Subscriber) -> set[int]:
    return {m["seq"] for m in moods(sub)}


def test_online_status_windows_then_stopped(mosquitto: Broker, spool: Spool) -> None:
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    pub = make_pub(mosquitto, spool)
    pub.start()
    avail = f"moodcam/{DEV}/availability"
    assert sub.wait_for(lambda: b"online" in sub.on(avail)), mosquitto.log()
    assert pub.connected
    pub.publish_status(samples.status())
    sent = [pub.submit_window(samples.mood(minute=i)) for i in range(5)]
    assert sent == [1, 2, 3, 4, 5]
    assert sub.wait_for(lambda: len(moods(sub)) >= 5 and bool(sub.on(f"moodcam/{DEV}/status")))
    for m in moods(sub):
        validate_mood(m)
    assert [m["seq"] for m in moods(sub)] == sent, "in seq order"
    for s in sub.on(f"moodcam/{DEV}/status"):
        validate_status(json.loads(s))
    assert pub.wait_flushed(5) and spool.depth() == 0
    pub.stop(5)
    assert sub.wait_for(lambda: sub.on(avail)[-1:] == [b"stopped"])
    sub.close()
    # Retained: a subscriber arriving later learns the device stopped and its last status.
    late = Subscriber(mosquitto, [avail, f"moodcam/{DEV}/status"])
    assert late.wait_for(lambda: late.on(avail) == [b"stopped"] and
                         len(late.on(f"moodcam/{DEV}/status")) == 1)
    assert all(m.retain for m in late.messages)
    late.close()


_CHILD = """
import sys, time
from device.config import CampaignConfig, MqttConfig
from device.mqtt import MqttPublisher
from device.spool import Spool
cfg = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5)
pub = MqttPublisher(cfg, CampaignConfig(), sys.argv[2], Spool(sys.argv[3]))
pub.start()
while not pub.connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(60)
"""


def test_kill_9_publishes_last_will_offline(mosquitto: Broker, tmp_path: Path) -> None:
    avail = "moodcam/victim/availability"
    sub = Subscriber(mosquitto, [avail])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(mosquitto.port), "victim",
         str(tmp_path / "child.sqlite")],
        cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert sub.wait_for(lambda: b"online" in sub.on(avail), timeout=15), mosquitto.log()
        os.kill(child.pid, signal.SIGKILL)
        assert sub.wait_for(lambda: sub.on(avail)[-1:] == [b"offline"], timeout=5)
    finally:
        child.kill()
        child.wait(5)
        sub.close()


def test_broker_absent_at_start_then_spooled_windows_arrive(
        mosquitto_persistent: Broker, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    broker = mosquitto_persistent
    # An analyst's persistent session (QoS 1, clean_session false) outlives broker restarts.
    sub = Subscriber(broker, [f"moodcam/{DEV}/mood"], persistent=True, client_id="analyst-1")
    sub.close()
    broker.stop()
    pub = make_pub(broker, spool)
    with caplog.at_level(logging.WARNING, logger="device.mqtt"):
        pub.start()  # not an error
        for i in range(6):
            pub.submit_window(samples.mood(minute=i))
        time.sleep(1.2)  # several reconnect attempts
        assert not pub.connected
        assert spool.depth() == 6
        refused = [r for r in caplog.records if "connection refused" in r.getMessage()]
        assert len(refused) == 1, "one warning per outage, not one per retry"
        broker.start()
        assert pub.wait_flushed(5), broker.log()
    sub = Subscriber(broker, [f"moodcam/{DEV}/mood"], persistent=True, client_id="analyst-1")
    assert sub.wait_for(lambda: seqs(sub) == set(range(1, 7)))
    pub.stop(2)
    sub.close()


@pytest.mark.parametrize("crash", [True, False], ids=["kill-9", "sigterm"])
def test_broker_restart_mid_stream_loses_no_window(
        mosquitto_persistent: Broker, spool: Spool, crash: bool) -> None:
    broker = mosquitto_persistent
    sub = Subscriber(broker, [f"moodcam/{DEV}/mood"], persistent=True, client_id="analyst-2")
    pub = make_pub(broker, spool)
    pub.start()
    assert wait_until(lambda: pub.connected)
    total = 60
    done = threading.Event()

    def produce() -> None:
        for i in range(total):
            pub.submit_window(samples.mood(minute=i % 60, happy=i))
            time.sleep(0.02)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert wait_until(lambda: len(seqs(sub)) >= 10)
    broker.kill() if crash else broker.stop()
    assert wait_until(lambda: not pub.connected, timeout=3)
    time.sleep(0.4)  # windows keep coming while the broker is away
    assert spool.depth() > 0
    broker.start()
    producer.join(10)
    assert done.is_set()
    assert pub.wait_flushed(8), broker.log()
    assert sub.wait_for(lambda: seqs(sub) == set(range(1, total + 1)), timeout=8), (
        sorted(set(range(1, total + 1)) - seqs(sub)))
    # Duplicates are allowed (at-least-once) but each copy is identical.
    by_seq: dict[int, dict[str, Any]] = {}
    for m in moods(sub):
        validate_mood(m)
        assert by_seq.setdefault(m["seq"], m) == m
    pub.stop(2)
    sub.close()


def test_windows_survive_a_publisher_restart(mosquitto: Broker, tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    first = Spool(path)
    pub = MqttPublisher(MqttConfig(enabled=False), CampaignConfig(), DEV, first)
    pub.start()
    for i in range(3):
        pub.submit_window(samples.mood(minute=i))
    pub.stop()
    first.close()
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    again = Spool(path)
    pub = make_pub(mosquitto, again)
    pub.start()
    assert sub.wait_for(lambda: seqs(sub) == {1, 2, 3})
    assert pub.submit_window(samples.mood(minute=9)) == 4
    assert sub.wait_for(lambda: 4 in seqs(sub))
    pub.stop(2)
    sub.close()


def test_wrong_credentials_keep_spooling_and_say_why(
        mosquitto_auth: Broker, spool: Spool, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong-password\n")
    pub = make_pub(mosquitto_auth, spool, username="moodcam", password_file=str(pw))
    with caplog.at_level(logging.DEBUG):
        pub.start()
        pub.submit_window(samples.mood())
        assert wait_until(lambda: any("refused the connection" in r.getMessage()
                                      for r in caplog.records))
        time.sleep(0.8)  # retries with backoff, still refused
    assert not pub.connected and spool.depth() == 1
    assert mosquitto_auth.log().count("not authorised") >= 2, "it keeps retrying"
    errors = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    assert "mqtt.username" in errors[0].getMessage()
    assert "wrong-password" not in caplog.text
    pub.stop(1)


def test_right_credentials_deliver(mosquitto_auth: Broker, spool: Spool, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("s3cret-pw\n")
    os.environ["CREDENTIALS_DIRECTORY"] = str(creds)  # systemd LoadCredential=
    try:
        with caplog.at_level(logging.DEBUG):
            pub = make_pub(mosquitto_auth, spool, username="moodcam")
            pub.start()
            pub.submit_window(samples.mood())
            assert pub.wait_flushed(5), mosquitto_auth.log()
            pub.stop(2)
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]
    assert "s3cret-pw" not in caplog.text


def _tls(broker: Broker, ca: str) -> dict[str, Any]:
    return {"port": broker.port, "tls": {"enabled": True, "ca_file": str(broker.extra[ca]),
                                         "cert_file": str(broker.extra["client.crt"]),
                                         "key_file": str(broker.extra["client.key"])}}


def test_tls_with_client_certificate(mosquitto_tls: Broker, spool: Spool) -> None:
    pub = make_pub(mosquitto_tls, spool, **_tls(mosquitto_tls, "ca.crt"))
    pub.start()
    pub.submit_window(samples.mood())
    assert pub.wait_flushed(5), mosquitto_tls.log()
    pub.stop(2)


def test_tls_wrong_ca_is_not_connected_and_says_so(
        mosquitto_tls: Broker, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    pub = make_pub(mosquitto_tls, spool, **_tls(mosquitto_tls, "other-ca.crt"))
    with caplog.at_level(logging.WARNING, logger="device.mqtt"):
        pub.start()
        pub.submit_window(samples.mood())
        assert wait_until(lambda: "TLS certificate check failed" in caplog.text), caplog.text
        time.sleep(0.5)
    assert not pub.connected and spool.depth() == 1
    assert "mqtt.tls.ca_file" in caplog.text
    assert caplog.text.count("TLS certificate check failed") == 1
    pub.stop(1)


def test_now_playing_payloads(mosquitto: Broker, spool: Spool,
                              caplog: pytest.LogCaptureFixture) -> None:
    topic = "signage/screen-1/now_playing"
    got: queue.Queue[str | None] = queue.Queue()
    pub = make_pub(mosquitto, spool, campaign=CampaignConfig(topic=topic),
                   on_content=got.put)
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/availability"])
    pub.start()
    assert sub.wait_for(lambda: b"online" in sub.on(f"moodcam/{DEV}/availability"))
    player = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="player")
    player.connect(mosquitto.host, mosquitto.port)
    player.loop_start()

    def say(payload: bytes | str) -> None:
        player.publish(topic, payload, qos=1).wait_for_publish(5)

    valid = [("promo-42", "promo-42"), ('{"content_id": "promo-43"}', "promo-43"),
             ('{"id": "promo-44"}', "promo-44"), ('"promo-45"', "promo-45"),
             ('{"content_id": null}', None), ("", None)]
    malformed = [b"\xff\xfe\xfd", b'{"content_id": 5}', b'{"other": "x"}', b"{not json",
                 b"x" * 300, b"a\x00b", b"[1, 2]", b"[" * 200_000 + b"]" * 200_000,
                 b'{"a": ' * 1000 + b"1" + b"}" * 1000]
    with caplog.at_level(logging.WARNING, logger="device.mqtt"):
        for payload, want in valid[:3]:
            say(payload)
            assert got.get(timeout=5) == want
        for bad in malformed:
            say(bad)
        for payload, want in valid[3:]:
            say(payload)
            assert got.get(timeout=5) == want  # still alive, and nothing in between
    assert got.empty()
    assert "ignored a malformed now-playing message" in caplog.text
    assert pub.connected
    player.loop_stop()
    player.disconnect()
    pub.stop(2)
    sub.close()


def test_hostile_now_playing_is_reported_and_the_topic_moves_on_reload(
        mosquitto: Broker, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    got: queue.Queue[str | None] = queue.Queue()
    bad: queue.Queue[str] = queue.Queue()
    pub = MqttPublisher(mqtt_cfg(mosquitto), CampaignConfig(topic="screen/a"), DEV, spool,
                        got.put, on_bad_content=bad.put)
    pub.start()
    player = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="player3")
    player.connect(mosquitto.host, mosquitto.port)
    player.loop_start()
    assert wait_until(lambda: pub.connected)
    time.sleep(0.3)  # the subscription

    def say(topic: str, payload: bytes | str) -> None:
        player.publish(topic, payload, qos=1).wait_for_publish(5)

    with caplog.at_level(logging.DEBUG):
        say("screen/a", b'{"content_id": ' * 100_000)  # 1.5 MB of nesting
        say("screen/a", b"[" * 4000)
        assert bad.get(timeout=5) == "payload of 1500000 bytes is over the 4096-byte limit"
        assert bad.get(timeout=5) == "JSON nested deeper than 8 levels"
        say("screen/a", "promo-1")
        assert got.get(timeout=5) == "promo-1"
        pub.set_campaign(CampaignConfig(topic="screen/b"))
        time.sleep(0.3)
        say("screen/a", "old-topic")
        say("screen/b", "new-topic")
        assert got.get(timeout=5) == "new-topic"
    assert got.empty() and bad.empty()
    assert "Recursion" not in caplog.text and "Traceback" not in caplog.text
    assert "ignored a malformed" not in caplog.text  # reported to the daemon instead
    player.loop_stop()
    player.disconnect()
    pub.stop(2)


def test_retained_now_playing_is_read_at_start(mosquitto: Broker, spool: Spool) -> None:
    topic = "signage/screen-2/now_playing"
    player = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="player2")
    player.connect(mosquitto.host, mosquitto.port)
    player.loop_start()
    player.publish(topic, "spring-sale", qos=1, retain=True).wait_for_publish(5)
    got: queue.Queue[str | None] = queue.Queue()
    pub = make_pub(mosquitto, spool, campaign=CampaignConfig(topic=topic), on_content=got.put)
    pub.start()
    assert got.get(timeout=5) == "spring-sale"
    pub.stop(2)
    player.loop_stop()
    player.disconnect()


def test_home_assistant_discovery(mosquitto: Broker, spool: Spool) -> None:
    sub = Subscriber(mosquitto, ["homeassistant/#"])
    pub = make_pub(mosquitto, spool, homeassistant={"enabled": True})
    pub.start()
    pub.publish_status(samples.status())
    want = {f"homeassistant/sensor/{DEV}_viewers_{k}/config"
            for k in ("happy", "sad", "neutral", "unknown", "total")}
    assert sub.wait_for(lambda: want <= {m.topic for m in sub.messages})
    cfg = json.loads(sub.on(f"homeassistant/sensor/{DEV}_viewers_happy/config")[-1])
    assert cfg["state_topic"] == f"moodcam/{DEV}/mood"
    assert cfg["availability"][0]["topic"] == f"moodcam/{DEV}/availability"
    assert "viewers[\"happy\"]" in cfg["value_template"]
    # A model with other labels: the stale sensors are removed (empty retained config).
    pub.publish_status(samples.status(labels=["happy", "surprised"]))
    sad = f"homeassistant/sensor/{DEV}_viewers_sad/config"
    assert sub.wait_for(lambda: sub.on(sad)[-1:] == [b""])
    pub.stop(2)
    sub.close()


def test_disabled_mqtt_only_spools(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    pub = MqttPublisher(MqttConfig(enabled=False), CampaignConfig(), DEV, spool)
    pub.start()
    assert pub.submit_window(samples.mood()) == 1
    assert not pub.wait_flushed(0.2)
    pub.stop(1)
    assert spool.depth() == 1


def test_stop_during_an_outage_is_prompt_and_keeps_windows(mosquitto: Broker,
                                                           spool: Spool) -> None:
    pub = make_pub(mosquitto, spool)
    pub.start()
    assert wait_until(lambda: pub.connected)
    mosquitto.kill()
    assert wait_until(lambda: not pub.connected)
    pub.submit_window(samples.mood())
    t0 = time.monotonic()
    pub.stop(2)
    assert time.monotonic() - t0 < 3
    assert spool.depth() == 1
