"""moodcam-nowplaying: player adapters, the bounded hold, and the real bridge against a
local Anthias-shaped HTTP server and a real mosquitto."""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analyst.nowplaying import (
    SAME,
    Holder,
    PlayerError,
    anthias_source,
    clean_content_id,
    exec_source,
    field_path,
    http_json_source,
)
from device.topics import parse_content_id
from tests.broker import HOST, Broker, Subscriber, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


def asset(name: str, asset_id: str = "4c8dbce552edb5812d3a866cfe5f159d") -> dict[str, Any]:
    """An asset as Anthias' AssetSerializer returns it (api/serializers, fields list)."""
    return {
        "asset_id": asset_id, "name": name, "uri": "https://example.org/summer.png",
        "start_date": "2026-11-01T00:00:00Z", "end_date": "2026-12-31T00:00:00Z",
        "duration": "10", "mimetype": "image", "is_enabled": 1, "nocache": 0,
        "play_order": 0, "skip_asset_check": 0, "is_active": 1, "is_processing": 0,
        "is_reachable": 1, "last_reachability_check": None, "metadata": {},
    }


class Player:
    """A local HTTP server answering GET /api/v1/viewer_current_asset like Anthias does.

    mode: "ok" (answers `body`), "slow" (waits `slow_s` first), "junk" (an HTML page),
    "error" (HTTP 500); stop() closes the port (a player that is down).
    """

    def __init__(self) -> None:
        self.body: Any = []
        self.mode = "ok"
        self.slow_s = 2.0
        self.requests = 0
        self.auth: str | None = None  # "user:password" the player demands (basic auth)
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        player = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                player.requests += 1
                if self.path != "/api/v1/viewer_current_asset":
                    self.send_error(404)
                    return
                if player.auth is not None:
                    token = base64.b64encode(player.auth.encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self.send_error(401)
                        return
                if player.mode == "slow":
                    time.sleep(player.slow_s)
                if player.mode == "error":
                    self.send_error(500)
                    return
                junk = player.mode == "junk"
                data = b"<html>Bad gateway</html>" if junk else json.dumps(player.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if junk else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer((HOST, self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def player() -> Iterator[Player]:
    p = Player()
    yield p
    p.stop()


# -- pure parts -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["promo-42", "  spaced ", "x" * 256, "", "ünï", 42, None])
def test_clean_content_id_agrees_with_the_device(value: Any) -> None:
    """What the bridge announces, the daemon accepts as the same id."""
    ours = clean_content_id(value)
    assert parse_content_id(json.dumps({"content_id": ours}).encode()) == ours
    if isinstance(value, str):
        assert ours == parse_content_id(json.dumps(value).encode())


@pytest.mark.parametrize("value", ["x" * 257, "a\nb", True, {"a": 1}, [1], 1.5e400])
def test_clean_content_id_rejects_what_the_device_would(value: Any) -> None:
    if isinstance(value, str):
        with pytest.raises(ValueError):
            parse_content_id(json.dumps(value).encode())
    if isinstance(value, float):
        return  # inf: json.dumps cannot even say it; we pass it through as a string
    with pytest.raises(PlayerError):
        clean_content_id(value)


def test_field_path() -> None:
    doc = {"data": {"items": [{"name": "a"}, {"name": "b"}]}, "n": None}
    assert field_path(doc, "data.items.1.name") == "b"
    assert field_path(doc, "n") is None
    assert field_path("bare", "") == "bare"
    with pytest.raises(PlayerError, match="no 'nope'"):
        field_path(doc, "data.nope")
    with pytest.raises(PlayerError, match="no item 5"):
        field_path(doc, "data.items.5")


def test_holder_keeps_the_last_content_for_hold_s_then_null(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "moodcam.nowplaying")
    h = Holder(hold_s=30, started=0.0)
    assert h.failed("down", 1.0) is SAME  # never answered yet: announce nothing
    assert h.ok("A", 2.0) == "A"
    assert h.ok("A", 3.0) is SAME  # unchanged: no publish
    assert h.failed("HTTP 500", 4.0) is SAME
    assert h.failed("HTTP 500", 32.9) is SAME  # within 30 s of the last answer (3.0)
    assert "keeping 'A' for up to 30 s" in caplog.text
    assert h.failed("HTTP 500", 33.0) is None
    assert "now playing unknown (null)" in caplog.text
    assert h.failed("HTTP 500", 40.0) is SAME
    assert h.ok("B", 41.0) == "B"
    assert "player answers again" in caplog.text
    assert h.ok(None, 42.0) is None
    assert h.ok(None, 43.0) is SAME


def test_holder_announces_null_when_the_player_never_answers() -> None:
    h = Holder(hold_s=5, started=100.0)
    assert h.failed("down", 104.9) is SAME
    assert h.failed("down", 105.0) is None
    assert h.failed("down", 106.0) is SAME


# -- sources against a real HTTP server -----------------------------------------------

def test_anthias_source_reads_the_asset_on_screen(player: Player) -> None:
    ask = anthias_source(player.url, timeout=1)
    assert ask() is None  # Anthias answers [] when nothing is on screen
    player.body = asset("Summer sale")
    assert ask() == "Summer sale"
    assert anthias_source(player.url, id_field="asset_id")() == player.body["asset_id"]


@pytest.mark.parametrize("mode,message", [
    ("junk", "not JSON"), ("error", "HTTP 500"), ("slow", "within 0.5 s")])
def test_anthias_source_failures_say_why(player: Player, mode: str, message: str) -> None:
    player.mode, player.slow_s = mode, 1.5
    with pytest.raises(PlayerError, match=message):
        anthias_source(player.url, timeout=0.5)()


def test_anthias_source_down_and_shape_errors(player: Player) -> None:
    player.body = {"unexpected": 1}
    with pytest.raises(PlayerError, match="no 'name'"):
        anthias_source(player.url)()
    player.body = [asset("a")]
    with pytest.raises(PlayerError, match="not an asset object"):
        anthias_source(player.url)()
    player.stop()
    with pytest.raises(PlayerError, match="cannot reach"):
        anthias_source(player.url, timeout=1)()


def test_anthias_with_basic_auth(player: Player) -> None:
    player.auth, player.body = "admin:s3cret", asset("A")
    assert anthias_source(player.url, auth=("admin", "s3cret"))() == "A"
    with pytest.raises(PlayerError, match=r"HTTP 401 .*needs --player-user"):
        anthias_source(player.url)()
    with pytest.raises(PlayerError, match="HTTP 401"):
        anthias_source(player.url, auth=("admin", "wrong"))()


def test_http_json_source_with_a_field_path(player: Player) -> None:
    player.body = {"id": "x"}  # served on the Anthias path, read generically
    url = player.url + "/api/v1/viewer_current_asset"
    assert http_json_source(url, "id")() == "x"
    player.body = {"playing": {"id": 17}}
    assert http_json_source(url, "playing.id")() == "17"


def test_exec_source(tmp_path: Path) -> None:
    f = tmp_path / "now"
    f.write_text("promo-7\nignored second line\n")
    assert exec_source(f"cat {f}")() == "promo-7"
    f.write_text("")
    assert exec_source(f"cat {f}")() is None
    with pytest.raises(PlayerError, match="exited with 1"):
        exec_source("false")()
    with pytest.raises(PlayerError, match=r"did not finish within 0\.3 s"):
        exec_source("sleep 5", timeout=0.3)()
    with pytest.raises(PlayerError, match="cannot run"):
        exec_source(str(tmp_path / "no-such-player"))()


# -- the real bridge: a subprocess against the HTTP player and mosquitto ---------------

TOPIC = "signage/screen-1/now_playing"


def start_bridge(broker: Broker, *args: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "analyst.nowplaying_cli", "--mqtt",
           f"{broker.host}:{broker.port}", "--topic", TOPIC, "--interval", "0.2", *args]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def contents(sub: Subscriber) -> list[str | None]:
    return [json.loads(p)["content_id"] for p in sub.on(TOPIC)]


@pytest.mark.broker
def test_bridge_announces_changes_only_and_holds_through_an_outage(
        mosquitto: Broker, player: Player, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto, [TOPIC])
    player.body = asset("A")
    log = tmp_path / "bridge.log"
    proc = start_bridge(mosquitto, "--anthias", player.url, "--hold", "2", "--timeout", "0.5",
                        log=log)
    try:
        assert sub.wait_for(lambda: contents(sub) == ["A"]), log.read_text()
        n = player.requests
        assert wait_until(lambda: player.requests >= n + 5, 5)
        assert contents(sub) == ["A"]  # polled 5 more times, unchanged: nothing published
        player.body = asset("B")
        assert sub.wait_for(lambda: contents(sub) == ["A", "B"])
        player.body = []
        assert sub.wait_for(lambda: contents(sub) == ["A", "B", None])
        player.body = asset("C")
        assert sub.wait_for(lambda: contents(sub)[-1:] == ["C"])

        # Slow, then junk, then down: "C" stays for --hold (2 s), then null, once.
        player.mode, player.slow_s = "slow", 1.0
        t0 = time.monotonic()
        time.sleep(0.8)
        player.mode = "junk"
        time.sleep(0.5)
        player.stop()
        assert sub.wait_for(lambda: contents(sub)[-1:] == [None], 5)
        assert time.monotonic() - t0 >= 1.9
        assert contents(sub) == ["A", "B", None, "C", None]
        text = log.read_text()
        assert "keeping 'C' for up to 2 s" in text
        assert "now playing unknown (null)" in text

        player.mode = "ok"
        player.start()  # the player is back
        assert sub.wait_for(lambda: contents(sub)[-1:] == ["C"], 5)
        assert "player answers again" in log.read_text()

        # A late subscriber (a daemon starting) gets the content at once: retained.
        late = Subscriber(mosquitto, [TOPIC])
        assert late.wait_for(lambda: contents(late) == ["C"])
        late.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
    assert rc == 0, log.read_text()
    # A stopped bridge no longer knows what plays: it says so, retained.
    assert sub.wait_for(lambda: contents(sub)[-1:] == [None])
    sub.close()


@pytest.mark.broker
def test_bridge_exec_mode_and_a_killed_bridge(mosquitto: Broker, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto, [TOPIC])
    now = tmp_path / "now"
    now.write_text("promo-1\n")
    proc = start_bridge(mosquitto, "--exec", f"cat {now}", log=tmp_path / "bridge.log")
    try:
        assert sub.wait_for(lambda: contents(sub) == ["promo-1"], 10)
        tmp = tmp_path / "now.tmp"  # replaced atomically, as a player should
        tmp.write_text("promo-2\n")
        tmp.replace(now)
        assert sub.wait_for(lambda: contents(sub) == ["promo-1", "promo-2"])
    finally:
        proc.kill()  # no clean stop: the broker sends the last will
        proc.wait(5)
    assert sub.wait_for(lambda: contents(sub)[-1:] == [None], 10)
    sub.close()


def test_bridge_bad_arguments_fail_in_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["--http", "http://127.0.0.1:9/x", "--topic", "t"], "--http needs --field"),
        (["--exec", "x", "--topic", "a/+/b"], "is not a topic name"),
        (["--exec", "x", "--topic", "t", "--mqtt", "nohost"], "is not HOST:PORT"),
        (["--topic", "t"], "one of the arguments --anthias --http --exec is required"),
    ]:
        done = subprocess.run([sys.executable, "-m", "analyst.nowplaying_cli", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        assert message in done.stderr


@pytest.mark.broker
def test_bridge_re_announces_after_a_broker_restart(mosquitto: Broker, tmp_path: Path) -> None:
    """The broker runs without persistence: a restart loses the retained content; the
    bridge re-sends it when it reconnects, though the content did not change."""
    now = tmp_path / "now"
    now.write_text("promo-1\n")
    log = tmp_path / "bridge.log"
    proc = start_bridge(mosquitto, "--exec", f"cat {now}", log=log)
    try:
        sub = Subscriber(mosquitto, [TOPIC])
        assert sub.wait_for(lambda: contents(sub) == ["promo-1"], 10), log.read_text()
        sub.close()
        mosquitto.stop()
        mosquitto.start()
        fresh = Subscriber(mosquitto, [TOPIC])
        assert fresh.wait_for(lambda: contents(fresh) == ["promo-1"], 15), log.read_text()
        fresh.close()
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.broker
def test_bridge_logs_in_to_the_broker(mosquitto_auth: Broker, tmp_path: Path) -> None:
    """--mqtt-user with the password from $MOODCAM_MQTT_PASSWORD (never on the command
    line, where `ps` shows it)."""
    import os

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    now = tmp_path / "now"
    now.write_text("promo-9\n")
    log = tmp_path / "bridge.log"
    cmd = [sys.executable, "-m", "analyst.nowplaying_cli", "--mqtt",
           f"{mosquitto_auth.host}:{mosquitto_auth.port}", "--topic", TOPIC, "--interval",
           "0.2", "--exec", f"cat {now}", "--mqtt-user", "moodcam"]
    got: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set("moodcam", "s3cret-pw")
    client.on_connect = lambda c, *a: c.subscribe(TOPIC, 1)
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.connect(mosquitto_auth.host, mosquitto_auth.port)
    client.loop_start()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MOODCAM_MQTT_PASSWORD": "s3cret-pw"})
    try:
        assert wait_until(lambda: b'{"content_id": "promo-9"}' in got, 10), log.read_text()
        assert "s3cret-pw" not in log.read_text()
    finally:
        proc.kill()
        proc.wait(5)
        client.loop_stop()
        client.disconnect()
