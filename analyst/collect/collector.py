"""The collector: an MQTT 5 persistent session whose messages are acknowledged only after the
database committed them.

paho's network thread only queues each message (manual acknowledgement: no PUBACK yet). The
main thread takes a batch from the queue, parses it, writes it in one transaction, and only
then acknowledges every message of the batch. A crash anywhere before the commit leaves the
messages unacknowledged in the broker's session, which redelivers them; a crash between the
commit and the acknowledgements makes the broker redeliver windows that are already stored,
and their primary key drops them. So each window is stored exactly once.

While the database is unreachable the batch is retried with backoff and nothing is
acknowledged; the broker stops sending once `receive_maximum` messages are unacknowledged,
which bounds the collector's memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from analyst.collect.parse import parse
from analyst.db import Record, Store, WriteResult, reject

log = logging.getLogger(__name__)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "moodcam"
    client_id: str = "moodcam-collect"
    group: str | None = None  # MQTT 5 shared subscription group for mood (scale-out)
    session_expiry_s: int = 7 * 24 * 3600  # how long the broker queues for us while we're down
    batch_max: int = 500
    batch_wait_s: float = 0.2  # how long a batch waits to fill once its first message came
    receive_maximum: int = 2000  # unacknowledged messages the broker may send us
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30


@dataclass
class Incoming:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime
    generation: int  # the connection it came on: a message id means nothing on another one


def _connection_error(e: BaseException) -> bool:
    """A database that is down or restarting (retry the whole batch), as opposed to one row
    it refuses (bisect and reject that row)."""
    return isinstance(e, OperationalError | InterfaceError) or (
        isinstance(e, DBAPIError) and e.connection_invalidated)


class Collector:
    def __init__(self, settings: Settings, engine: Engine,
                 on_batch: Callable[[WriteResult], None] | None = None) -> None:
        self.s = settings
        self.store = Store(engine)
        self.on_batch = on_batch
        self.inbox: queue.Queue[Incoming] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.generation = 0
        self._gen_lock = threading.Lock()
        self.totals = WriteResult()
        self.client = self._make_client()

    # --- MQTT side (paho's thread) -------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.s.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if self.s.username:
            c.username_pw_set(self.s.username, self.s.password)
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def topics(self) -> list[tuple[str, SubscribeOptions]]:
        p = self.s.prefix
        # Retained messages are never sent on a shared subscription (MQTT 5, 4.8.2), so
        # status and availability, which are retained, stay plain subscriptions: every
        # collector of a group writes them (an idempotent upsert of the same values).
        mood = f"$share/{self.s.group}/{p}/+/mood" if self.s.group else f"{p}/+/mood"
        once = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        return [(mood, SubscribeOptions(qos=1)), (f"{p}/+/status", once),
                (f"{p}/+/availability", once)]

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any,
                    _p: Any = None) -> None:
        if rc.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self.s.host, self.s.port, rc)
            return
        with self._gen_lock:
            self.generation += 1
            reconnect = self.generation > 1
        log.info("connected to %s:%d as %s (session %s)", self.s.host, self.s.port,
                 self.s.client_id, "resumed" if flags.session_present else "new")
        if reconnect and not flags.session_present:
            log.warning("the broker had lost this collector's session: windows published "
                        "while it was away were not queued (mosquitto: persistence true)")
        client.subscribe(self.topics())
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any,
                       _p: Any = None) -> None:
        self.connected.clear()
        with self._gen_lock:
            self.generation += 1  # ids of messages not yet acknowledged are void now
        if not self.stopping.is_set():
            log.warning("lost the broker (%s); reconnecting, unacknowledged messages will be "
                        "redelivered", rc)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Incoming(msg.mid, msg.qos, msg.topic, bytes(msg.payload),
                                datetime.now(UTC), self.generation))

    # --- the database side (the caller's thread) -----------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.s.session_expiry_s
        props.ReceiveMaximum = self.s.receive_maximum
        # connect_async + loop_start: a broker that is down at start is retried like one
        # that goes away later, instead of failing the command.
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive_s,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Ask run() to finish its batch and return."""
        self.stopping.set()

    def run(self) -> None:
        """Collect until stop(); then store what was received, disconnect and return.

        Two stages: this thread takes and parses batch N+1 while a writer thread commits
        and acknowledges batch N (the commit mostly waits on the database), at most one
        batch ahead."""
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moodcam-writer")
        pending: Future[bool] | None = None
        self.start()
        try:
            while not self.stopping.is_set():
                batch = self._take(block=True)
                if batch:
                    records = self._parse(batch)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(self._commit, batch, records)
            if pending is not None and not pending.result():
                return
            # Finish: what already arrived is stored and acknowledged, the rest stays
            # queued in the broker for our session.
            while batch := self._take(block=False):
                if not self._commit(batch, self._parse(batch)):
                    break
        finally:
            writer.shutdown(wait=True)
            self.client.disconnect()
            self.client.loop_stop()
            t = self.totals
            log.info("stopped: %d windows stored, %d duplicates dropped, %d rejected",
                     t.new, t.duplicates, t.rejected)

    def _parse(self, batch: list[Incoming]) -> list[Record]:
        return [parse(m.topic, m.payload, self.s.prefix, m.received_at) for m in batch]

    def _take(self, block: bool) -> list[Incoming]:
        batch: list[Incoming] = []
        try:
            batch.append(self.inbox.get(timeout=0.2) if block else self.inbox.get_nowait())
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.s.batch_wait_s
        while len(batch) < self.s.batch_max:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not block:
                    break
                try:
                    batch.append(self.inbox.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _commit(self, batch: list[Incoming], records: list[Record]) -> bool:
        """Store the batch, then acknowledge it. False if stopped while the DB was down."""
        delay = 0.5
        while True:
            try:
                result = self._write(records)
                break
            except Exception as e:
                if not _connection_error(e):
                    raise
                if self.stopping.is_set():
                    log.warning("stopping with the database unreachable: %d messages left "
                                "unacknowledged for the broker to redeliver", len(batch))
                    return False
                log.warning("database unavailable (%s); not acknowledging %d messages, "
                            "retrying in %.1f s", str(e).splitlines()[0][:200], len(batch),
                            delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
        gen = self.generation
        for m in batch:
            if m.qos > 0 and m.generation == gen:
                self.client.ack(m.mid, m.qos)
        self.totals.new += result.new
        self.totals.duplicates += result.duplicates
        self.totals.rejected += result.rejected
        if self.on_batch:
            self.on_batch(result)
        return True

    def _write(self, records: list[Record]) -> WriteResult:
        try:
            return self.store.write(records)
        except Exception as e:
            if _connection_error(e) or len(records) == 1:
                raise
        # Some row the database refuses (e.g. a count beyond its integer range): store the
        # batch in halves until the culprit is alone, and reject it with the reason.
        out = WriteResult()
        half = len(records) // 2
        for part in (records[:half], records[half:]):
            try:
                r = self._write(part) if len(part) > 1 else self.store.write(part)
            except Exception as e:
                if _connection_error(e):
                    raise
                (rec,) = part
                r = self.store.write([self._refused(rec, e)])
            out.new += r.new
            out.duplicates += r.duplicates
            out.rejected += r.rejected
            out.new_ids += r.new_ids
        return out

    @staticmethod
    def _refused(rec: Record, e: Exception) -> Record:
        reason = "database refused: " + str(e).splitlines()[0][:300]
        row = getattr(rec, "row", None) or {}
        raw = row.get("raw") or row.get("status_raw") or ""
        topic = getattr(rec, "topic", "") or f"?/{getattr(rec, 'device_id', '?')}/?"
        log.warning("%s: %s", topic, reason)
        return reject(topic, reason, raw.encode(), datetime.now(UTC))
