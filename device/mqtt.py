"""Publishing windows and status to MQTT (paho-mqtt 2.x), and hearing what the screen shows.

Delivery rule: a window goes to the spool first and leaves it only when the broker's
PUBACK for it arrives, so an outage of any length (or a restart) loses nothing; a
subscriber may see a window twice and drops the copy by window_id.

Threads: paho's network thread runs the callbacks; one worker thread of ours does every
`mood` publish and every spool ack. Callbacks never take a lock that is held around a
paho call (paho calls on_publish while holding its own message lock), they only queue
the acknowledged message id and wake the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device import __version__
from device.config import CampaignConfig, MqttConfig
from device.mqtt_client import Client, describe_connect_error, make_client
from device.spool import Spool
from device.topics import Topics, ha_discovery, parse_content_id

log = logging.getLogger(__name__)

MAX_INFLIGHT = 20  # paho's default window of unacknowledged QoS 1 messages
_MALFORMED_LOG_EVERY_S = 60.0


class MqttPublisher:
    """Spool-backed publisher of `mood` windows plus `availability` and `status`."""

    def __init__(
        self,
        cfg: MqttConfig,
        campaign: CampaignConfig,
        device_id: str,
        spool: Spool,
        on_content: Callable[[str | None], None] | None = None,
        *,
        version: str = __version__,
        on_bad_content: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.campaign = campaign
        self.spool = spool
        self.topics = Topics(cfg.topic_prefix, device_id)
        self.on_content = on_content
        # Given: malformed now-playing payloads are reported there (the daemon logs a
        # burst once); else logged here at most once a minute.
        self.on_bad_content = on_bad_content
        self.version = version
        self.client_id = cfg.client_id or f"moodcam-{device_id}-{secrets.token_hex(3)}"
        self._connected = False
        self._started = False
        self._stopping = False
        self._problem: str | None = None  # what is wrong in the current outage, if logged
        self._outage_since: float | None = None
        self._last_status: str | None = None
        self._ha_labels: list[str] = []
        self._ha_topics: set[str] = set()
        self._last_malformed_log = 0.0
        # Worker-owned: message id -> seq of mood messages awaiting PUBACK.
        self._inflight: dict[int, int] = {}
        self._acked: deque[int] = deque()
        # Seqs the broker acknowledged whose delete from the spool failed (full or
        # failing disk): never re-sent by this process; the delete is retried.
        self._ack_pending: set[int] = set()
        self.ack_fault: str | None = None
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="moodcam-publisher", daemon=True)
        self._client = self._make_client()

    # --- setup ---

    def _make_client(self) -> Client:
        c = make_client(self.cfg, self.client_id, self.topics.availability, MAX_INFLIGHT)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    @property
    def connected(self) -> bool:
        return self._connected

    # --- public API ---

    def start(self) -> None:
        """Connect in the background; an unreachable broker only means windows wait."""
        if self._started:
            return
        self._started = True
        if not self.cfg.enabled:
            log.info("mqtt.enabled is false: windows stay in the spool %s", self.spool.path)
            return
        self._outage_since = time.monotonic()
        self._worker.start()
        self._client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self._client.loop_start()
        log.info("MQTT: connecting to %s:%d as %s (topics %s/)", self.cfg.host, self.cfg.port,
                 self.client_id, self.topics.base)

    def submit_window(self, payload: dict[str, Any]) -> int:
        """Spool a finished window (durably), then publish it when possible; return its seq.
        A payload without "seq" is numbered from the spool here (stream, seq, window_id)."""
        if "seq" not in payload:
            seq, stream = self.spool.allocate(), self.spool.stream
            payload = {**payload, "seq": seq, "stream": stream,
                       "window_id": f"{payload['device_id']}/{stream}/{seq}"}
        seq = self.spool.put(payload)
        self._wake.set()
        return seq

    def wake(self) -> None:
        """A window was spooled (or released): publish it when possible."""
        self._wake.set()

    def publish_status(self, status: dict[str, Any]) -> None:
        """Publish the retained status now if connected, else as soon as we connect."""
        self._last_status = json.dumps(status, separators=(",", ":"), ensure_ascii=False)
        labels = status.get("model", {}).get("labels")
        if isinstance(labels, list) and [*labels, "unknown"] != self._ha_labels:
            self._ha_labels = [*labels, "unknown"]
            if self._connected:
                self._publish_discovery()
        if self._connected:
            self._client.publish(self.topics.status, self._last_status, qos=1, retain=True)

    def set_campaign(self, campaign: CampaignConfig) -> None:
        """A reload changed [campaign]: move the subscription to the new topic now."""
        old, self.campaign = self.campaign.topic, campaign
        if old == campaign.topic or not self._connected:
            return  # not connected: _on_connect subscribes to the new topic
        if old:
            self._client.unsubscribe(old)
        if campaign.topic:
            self._client.subscribe(campaign.topic, qos=1)
        log.info("MQTT: now-playing topic now %s", campaign.topic or "(none)")

    def wait_flushed(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every spooled window; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.spool.pending(limit=1):  # held windows wait for the clock
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._progress.wait(min(remaining, 0.1))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed, publish 'stopped', disconnect. Unsent windows stay spooled."""
        if not self._started or self._stopping:
            return
        deadline = time.monotonic() + timeout
        if not self.cfg.enabled:
            self._stopping = True
            return
        if self._connected:
            self.wait_flushed(max(0.0, timeout * 0.6))
        self._stopping = True
        self._wake.set()
        self._worker.join(max(0.1, deadline - time.monotonic()))
        if self._connected:
            info = self._client.publish(self.topics.availability, "stopped", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        self._drain_acks()  # PUBACKs that arrived after the worker ended
        left = self.spool.depth()
        log.info("MQTT: stopped; %d window(s) left in the spool for the next start", left)

    # --- the worker: all mood publishing and spool acks happen here ---

    def _work(self) -> None:
        while not self._stopping:
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._drain_acks()
                if self._connected and not self._stopping:
                    self._publish_pending()
            except Exception:
                log.exception("MQTT publisher: unexpected error; retrying in a second")
                time.sleep(1.0)
            with self._progress:
                self._progress.notify_all()
        self._drain_acks()

    def _drain_acks(self) -> None:
        while self._acked:
            seq = self._inflight.pop(self._acked.popleft(), None)
            if seq is not None:
                self._ack_pending.add(seq)
        for seq in sorted(self._ack_pending):
            try:
                self.spool.ack(seq)
            except (sqlite3.Error, OSError) as e:
                fault = f"cannot delete acknowledged windows: {' '.join(str(e).split())}"
                if fault != self.ack_fault:
                    log.error("spool %s: %s; they are not re-sent, the delete is retried",
                              self.spool.path, fault)
                self.ack_fault = fault[:280]
                return
            self._ack_pending.discard(seq)
        if self.ack_fault is not None:
            log.warning("spool %s: deleting acknowledged windows works again",
                        self.spool.path)
            self.ack_fault = None

    def _publish_pending(self) -> None:
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        busy = set(self._inflight.values()) | self._ack_pending
        for seq, payload in self.spool.pending(limit=room + len(busy)):
            if seq in busy:
                continue
            if not self._connected or room <= 0:
                break
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            # Queued by paho even if the connection just dropped; resent on reconnect.
            info = self._client.publish(self.topics.mood, text, qos=1)
            self._inflight[info.mid] = seq
            room -= 1

    # --- paho callbacks (network thread): never raise, never block ---

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            hint = ("check mqtt.username and the password (mqtt.password_file or the "
                    "systemd credential)" if reason.value in (134, 135)
                    else "check the broker's log")
            self._report(f"broker refused the connection: {reason}; {hint}", logging.ERROR)
            return
        self._connected = True
        if self._problem is not None and self._outage_since is not None:
            log.warning("MQTT: connected to %s:%d after %.0f s of trouble; sending %d "
                        "spooled window(s)", self.cfg.host, self.cfg.port,
                        time.monotonic() - self._outage_since, self.spool.depth())
        else:
            log.info("MQTT: connected to %s:%d", self.cfg.host, self.cfg.port)
        self._problem = None
        self._outage_since = None
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        if self.campaign.topic:
            client.subscribe(self.campaign.topic, qos=1)
        if self._last_status is not None:
            client.publish(self.topics.status, self._last_status, qos=1, retain=True)
        self._publish_discovery()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._report(describe_connect_error(getattr(client, "last_error", None)), logging.WARNING)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        was_connected = self._connected
        self._connected = False
        if self._stopping or not was_connected:
            return
        self._outage_since = time.monotonic()
        self._report(f"connection lost ({reason})", logging.WARNING)

    def _report(self, problem: str, level: int) -> None:
        """Log a connection problem once per outage (again only if the problem changes)."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        if problem != self._problem:
            self._problem = problem
            log.log(level, "MQTT broker %s:%d: %s; windows are spooled and sent after "
                    "reconnecting (retrying every %g-%g s)", self.cfg.host, self.cfg.port,
                    problem, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int,
                    reason: ReasonCode, properties: Properties | None) -> None:
        self._acked.append(mid)
        self._wake.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        if any(r.is_failure for r in reasons):
            log.warning("MQTT: the broker refused the subscription to campaign.topic %r "
                        "(check its ACL); windows are not attributed to content",
                        self.campaign.topic)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.campaign.topic:
            return
        try:
            content = parse_content_id(msg.payload)
        except ValueError as e:
            if self.on_bad_content is not None:
                self.on_bad_content(str(e))
                return
            now = time.monotonic()
            level = logging.DEBUG
            if now - self._last_malformed_log >= _MALFORMED_LOG_EVERY_S:
                self._last_malformed_log, level = now, logging.WARNING
            log.log(level, "ignored a malformed now-playing message on %s: %s", msg.topic, e)
            return
        # DEBUG: a flood must not flood the log (the daemon logs each switch it makes).
        log.debug("now playing on %s: %s", msg.topic, content)
        if self.on_content is not None:
            try:
                self.on_content(content)
            except Exception:
                log.exception("the now-playing handler failed for content id %r", content)

    def _publish_discovery(self) -> None:
        ha = self.cfg.homeassistant
        if not ha.enabled or not self._ha_labels:
            return
        configs = ha_discovery(self.topics, ha.discovery_prefix, self._ha_labels, self.version)
        for topic in self._ha_topics - configs.keys():
            self._client.publish(topic, b"", qos=1, retain=True)  # removes a stale sensor
        for topic, payload in configs.items():
            self._client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self._ha_topics = set(configs)
