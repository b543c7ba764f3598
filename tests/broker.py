"""A real mosquitto for the tests, on a free loopback port, plus a paho subscriber helper.

Fixtures: `mosquitto` (anonymous), `mosquitto_persistent` (keeps sessions across a
restart, even a kill -9, so a subscriber's persistent session proves zero loss),
`mosquitto_auth` (user/password), `mosquitto_tls` (TLS with client certificates).
Each broker object has host, port, start(), stop() (SIGTERM), kill() (SIGKILL) and
log(); start() after stop()/kill() reuses the same port, for outage tests.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); "
                    "the MQTT tests need a real broker")
    return found


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    An ephemeral port would let a client that keeps reconnecting to a stopped broker
    pick that very port as its own source and connect to itself (TCP simultaneous
    open); the restarted broker then fails with "Address already in use". CI hit it.
    """
    high = _ephemeral_low()
    low = 20000 if high > 21000 else 1024
    for _ in range(200):
        port = random.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


@dataclass
class Broker:
    conf: Path
    port: int
    host: str = HOST
    extra: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def logfile(self) -> Path:
        return self.conf.with_suffix(".log")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def start(self, timeout: float = 5.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        """Clean shutdown (SIGTERM): a persistent broker saves its sessions."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is saved, connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def make_broker(tmp: Path, lines: list[str], **extra: Any) -> Broker:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    # log_dest file flushes each line; stdout into a file would be block-buffered.
    head = [f"listener {port} {HOST}", f"log_dest file {conf.with_suffix('.log')}",
            "log_type all"]
    if os.geteuid() == 0:
        head.append("user root")  # else mosquitto switches to user 'mosquitto' and loses tmp/
    conf.write_text("\n".join(head + lines) + "\n")
    return Broker(conf=conf, port=port, extra=extra)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    b = make_broker(tmp_path, ["allow_anonymous true", "persistence false"])
    b.start()
    yield b
    b.kill()


@pytest.fixture
def mosquitto_persistent(tmp_path: Path) -> Iterator[Broker]:
    store = tmp_path / "store"
    store.mkdir()
    b = make_broker(tmp_path, [
        "allow_anonymous true", "persistence true", f"persistence_location {store}/",
        # Save after every change, so even a kill -9 keeps subscribers' sessions.
        "autosave_on_changes true", "autosave_interval 1",
    ])
    b.start()
    yield b
    b.kill()


@pytest.fixture
def mosquitto_auth(tmp_path: Path) -> Iterator[Broker]:
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(passwd).exists():
        pytest.skip("mosquitto_passwd is not installed (comes with mosquitto)")
    pwfile = tmp_path / "passwd"
    subprocess.run([passwd, "-b", "-c", str(pwfile), "moodcam", "s3cret-pw"], check=True,
                   capture_output=True)
    b = make_broker(tmp_path, ["allow_anonymous false", f"password_file {pwfile}",
                               "persistence false"], username="moodcam", password="s3cret-pw")
    b.start()
    yield b
    b.kill()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _make_leaf(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a server cert for 127.0.0.1/localhost, a client cert, and a CA
    that signed none of them."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make throwaway TLS certificates")
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
               "extendedKeyUsage=serverAuth")
    _make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    return {n: d / n for n in ("ca.crt", "other-ca.crt", "server.crt", "server.key",
                               "client.crt", "client.key")}


@pytest.fixture
def mosquitto_tls(tmp_path: Path, tls_files: dict[str, Path]) -> Iterator[Broker]:
    b = make_broker(tmp_path, [
        "allow_anonymous true", "persistence false",
        f"cafile {tls_files['ca.crt']}", f"certfile {tls_files['server.crt']}",
        f"keyfile {tls_files['server.key']}", "require_certificate true",
    ], **tls_files)
    b.start()
    yield b
    b.kill()


class Subscriber:
    """A paho client that records every message on `topics` (resubscribing on reconnect)."""

    def __init__(self, broker: Broker, topics: list[str], *, persistent: bool = False,
                 client_id: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self.topics = topics
        cid = client_id or f"test-sub-{os.getpid()}-{id(self):x}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(5), "test subscriber could not subscribe"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [bytes(m.payload) for m in self.messages if m.topic == topic]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class HoldingProxy:
    """A TCP relay in front of a broker whose broker-to-client direction can be held.

    While held, what the client sends still reaches the broker (subscribers receive its
    PUBLISHes) but nothing comes back: every PUBACK is withheld, so each message the
    client publishes stays in flight for as long as the test wants.
    """

    def __init__(self, broker: Broker) -> None:
        self.target = (broker.host, broker.port)
        self.server = socket.create_server((HOST, 0))
        self.port: int = self.server.getsockname()[1]
        self.host = HOST
        self._open = threading.Event()
        self._open.set()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, holdable: bool) -> None:
        try:
            while data := src.recv(65536):
                while holdable and not self._open.wait(0.05):
                    pass
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._open.set()
        self.server.close()
        for s in self._socks:
            s.close()
