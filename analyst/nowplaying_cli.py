"""moodcam-nowplaying: bridge a signage player to the retained now-playing MQTT topic.

Polls the player about once a second and publishes `{"content_id": ...}` (QoS 1, retained)
on the topic the daemons' `campaign.topic` reads, only when the content changes, and again
after each reconnect (a broker restarted without persistence has lost the retained value).
Its last will, and a clean stop, announce `{"content_id": null}`: with the bridge gone
nobody knows what the screen shows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from analyst.nowplaying import (
    SAME,
    Holder,
    PlayerError,
    Source,
    anthias_source,
    exec_source,
    http_json_source,
)

log = logging.getLogger("moodcam.nowplaying")

PLAYER_PASSWORD_ENV = "MOODCAM_PLAYER_PASSWORD"
MQTT_PASSWORD_ENV = "MOODCAM_MQTT_PASSWORD"


def payload(content_id: str | None) -> bytes:
    return json.dumps({"content_id": content_id}).encode()


class Announcer:
    """A paho 2 client that keeps the latest content retained on one topic."""

    def __init__(self, host: str, port: int, topic: str, *, client_id: str,
                 username: str | None = None, password: str | None = None) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._value: Any = SAME  # nothing to announce until the player has said something
        self._online = False  # set in our own callbacks, so a value is sent once per connection
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.will_set(topic, payload(None), qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda *a: log.warning(
            "MQTT broker %s:%d unreachable; retrying", host, port)
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        log.info("MQTT connected; announcing on %s", self.topic)
        with self._lock:
            self._online = True
            if self._value is not SAME:
                client.publish(self.topic, payload(self._value), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._lock:
            self._online = False
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def announce(self, content_id: str | None) -> None:
        with self._lock:
            self._value = content_id
            # While offline, _on_connect sends the latest value once connected.
            if self._online:
                self.client.publish(self.topic, payload(content_id), qos=1, retain=True)
        log.info("now playing %s (announced on %s)", content_id, self.topic)

    def close(self, timeout: float = 5.0) -> None:
        """Announce that nothing is known any more, then disconnect."""
        info = self.client.publish(self.topic, payload(None), qos=1, retain=True)
        if self.client.is_connected():
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()


def poll(source: Source, announce: Callable[[str | None], None], *, interval: float,
         hold_s: float, stop: threading.Event,
         clock: Callable[[], float] = time.monotonic) -> None:
    """Ask the player every `interval` seconds until `stop` is set."""
    holder = Holder(hold_s=hold_s, started=clock())
    while not stop.is_set():
        began = clock()
        try:
            value = holder.ok(source(), clock())
        except PlayerError as e:
            value = holder.failed(str(e), clock())
        if value is not SAME:
            announce(value)
        stop.wait(max(0.0, interval - (clock() - began)))


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:1883)")
    return host, int(port)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _topic(text: str) -> str:
    if not text or "+" in text or "#" in text or "\0" in text or "//" in text \
            or text.startswith("/") or text.endswith("/"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a topic name (no wildcards, no empty levels)")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moodcam-nowplaying",
        description="Announce what a signage player shows on the retained now-playing "
                    "topic that moodcam's campaign.topic reads.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--anthias", metavar="URL",
                     help="Anthias (Screenly OSE) base URL, e.g. http://127.0.0.1:80; polls "
                          "GET /api/v1/viewer_current_asset")
    src.add_argument("--http", metavar="URL",
                     help="any player's JSON endpoint; --field says where the id is")
    src.add_argument("--exec", metavar="CMD", dest="command",
                     help="a command run at each poll; its first output line is the id")
    p.add_argument("--field", default=None,
                   help="dotted path to the content id in the JSON answer (e.g. data.id or "
                        "items.0.name); Anthias default: name (use asset_id for the uuid)")
    p.add_argument("--mqtt", type=_host_port, default=("127.0.0.1", 1883),
                   metavar="HOST:PORT", help="broker (default 127.0.0.1:1883)")
    p.add_argument("--topic", type=_topic, required=True,
                   help="the now-playing topic (the daemons' campaign.topic)")
    p.add_argument("--interval", type=_positive, default=1.0,
                   help="seconds between polls (default 1)")
    p.add_argument("--hold", type=_positive, default=30.0,
                   help="seconds a failing player keeps its last content before it becomes "
                        "null (default 30)")
    p.add_argument("--timeout", type=_positive, default=3.0,
                   help="seconds to wait for one answer (default 3)")
    p.add_argument("--player-user", help=f"HTTP basic auth user; password from "
                                         f"${PLAYER_PASSWORD_ENV}")
    p.add_argument("--mqtt-user", help=f"MQTT user; password from ${MQTT_PASSWORD_ENV}")
    p.add_argument("--client-id", default=f"moodcam-nowplaying-{os.getpid()}")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def make_source(args: argparse.Namespace) -> Source:
    auth = None
    if args.player_user is not None:
        auth = (args.player_user, os.environ.get(PLAYER_PASSWORD_ENV, ""))
    if args.anthias:
        return anthias_source(args.anthias, id_field=args.field or "name",
                              timeout=args.timeout, auth=auth)
    if args.http:
        if args.field is None:
            raise ValueError("--http needs --field (the dotted path to the content id; "
                             "'' for a bare JSON string)")
        return http_json_source(args.http, args.field, timeout=args.timeout, auth=auth)
    return exec_source(args.command, timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        source = make_source(args)
    except ValueError as e:
        print(f"moodcam-nowplaying: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host, port = args.mqtt
    user = args.mqtt_user
    announcer = Announcer(host, port, args.topic, client_id=args.client_id, username=user,
                          password=os.environ.get(MQTT_PASSWORD_ENV) if user else None)
    try:
        poll(source, announcer.announce, interval=args.interval, hold_s=args.hold, stop=stop)
    finally:
        announcer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
