"""Reaching the running daemon from `moodcam model`: find it, reload it, watch its status.

The daemon reloads its config and model on SIGHUP (under systemd: `systemctl reload
moodcam`) and reports the model it runs, by sha256, in its retained MQTT `status`. That
status is the only proof that matters: the process may be alive while the reload was
refused, so a model command waits for it rather than trusting the signal.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.config import Config, ConfigError, resolve_password
from device.topics import Topics

UNIT = "moodcam"
# A status whose newest frame is older than this does not count as "frames flowing".
FRESH_FRAME_S = 5.0


class DaemonError(RuntimeError):
    """The daemon could not be reached or did not confirm; str() is one line."""


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _config_arg(pid: int, argv: list[str]) -> str | None:
    """The --config of a `moodcam run` command line, made absolute against its cwd."""
    for i, a in enumerate(argv):
        if Path(a).name == "moodcam" or a == "device.cli":
            rest = argv[i + 1:]
            break
    else:
        return None
    if not rest or rest[0] != "run":
        return None
    value = None
    for j, a in enumerate(rest):
        if a == "--config" and j + 1 < len(rest):
            value = rest[j + 1]
        elif a.startswith("--config="):
            value = a.split("=", 1)[1]
    if value is None:
        return None
    if not os.path.isabs(value):
        try:
            value = os.path.join(os.readlink(f"/proc/{pid}/cwd"), value)
        except OSError:
            return None
    return os.path.realpath(value)


def find_daemons(config_path: Path) -> list[int]:
    """Pids of `moodcam run --config <config_path>` processes (any user)."""
    want = os.path.realpath(config_path)
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            pid = int(entry.name)
            if _config_arg(pid, _argv(pid)) == want:
                pids.append(pid)
    return sorted(pids)


def systemd_main_pid(unit: str = UNIT) -> int | None:
    """The unit's main pid when systemd runs this machine and the unit is active."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return None
    try:
        out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    pid = out.stdout.strip()
    return int(pid) if pid.isdigit() and int(pid) > 0 else None


@dataclass
class Daemon:
    pids: list[int]
    via_systemd: bool = False

    def describe(self) -> str:
        how = f"systemd unit {UNIT}, " if self.via_systemd else ""
        return f"{how}pid {', '.join(map(str, self.pids))}"

    def alive(self) -> bool:
        for pid in self.pids:
            try:
                os.kill(pid, 0)
                return True
            except ProcessLookupError:
                continue
            except PermissionError:
                return True
        return False

    def reload(self) -> None:
        if self.via_systemd:
            p = subprocess.run(["systemctl", "reload", UNIT], capture_output=True, text=True,
                               timeout=60, check=False)
            if p.returncode != 0:
                why = (p.stderr.strip().splitlines() or ["no message"])[-1]
                raise DaemonError(f"systemctl reload {UNIT} failed: {why}")
            return
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                continue
            except PermissionError as e:
                raise DaemonError(f"cannot signal the daemon (pid {pid}): {e.strerror}; "
                                  "run as root") from None


def find_daemon(config_path: Path, pids: list[int] | None = None) -> Daemon | None:
    """The daemon running with this config: given pids, else found in /proc; through
    systemd when it is the unit's main process."""
    found = pids or find_daemons(config_path)
    if not found:
        return None
    main = systemd_main_pid()
    return Daemon(found, via_systemd=main is not None and main in found)


def runs_model(status: dict[str, Any], sha256: str) -> bool:
    """Does this status say the daemon runs the model with this sha256, frames flowing?

    "degraded" counts when the camera is fine and no reload failed: a fault elsewhere
    (junk on the now-playing topic, a full spool) says nothing about the model, and
    rolling a good model back over it would not help."""
    model = status.get("model") or {}
    cam = status.get("camera") or {}
    age = cam.get("last_frame_age_s")
    faults = status.get("faults") or {}
    return (model.get("sha256") == sha256
            and status.get("state") in ("running", "degraded") and "config" not in faults
            and cam.get("state") == "ok" and isinstance(age, int | float)
            and age <= FRESH_FRAME_S)


def describe_status(status: dict[str, Any] | None) -> str:
    if status is None:
        return "no status message arrived"
    model = status.get("model") or {}
    cam = status.get("camera") or {}
    return (f"last status: state {status.get('state')}, model sha256 "
            f"{str(model.get('sha256'))[:12]}, camera {cam.get('state')}, last frame "
            f"{cam.get('last_frame_age_s')} s ago")


@dataclass
class StatusWatcher:
    """Subscribes to the daemon's retained status with the daemon's own broker settings."""

    cfg: Config
    messages: queue.SimpleQueue[dict[str, Any]] = field(default_factory=queue.SimpleQueue)
    last: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        m = self.cfg.mqtt
        self.topic = Topics(m.topic_prefix, self.cfg.device_id).status
        self._ready = threading.Event()
        self._error: str | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                        client_id=f"moodcam-model-{self.cfg.device_id}-{secrets.token_hex(3)}")
        if m.username:
            try:
                pw = resolve_password(m)
            except ConfigError as e:
                raise DaemonError(e.problems[0]) from None
            c.username_pw_set(m.username, pw.get_secret_value() if pw else None)
        if m.tls.enabled:
            t = m.tls
            try:
                c.tls_set(ca_certs=str(t.ca_file) if t.ca_file else None,
                          certfile=str(t.cert_file) if t.cert_file else None,
                          keyfile=str(t.key_file) if t.key_file else None,
                          cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ValueError) as e:
                raise DaemonError(f"mqtt.tls: cannot load the TLS files: {e}") from None
            c.tls_insecure_set(t.insecure)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_a: self._ready.set()
        c.on_message = self._on_message
        self._client = c

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._error = f"broker refused the connection: {reason}"
            self._ready.set()
            return
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            status = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(status, dict):
            self.messages.put(status)

    def start(self, timeout: float = 10.0) -> None:
        m = self.cfg.mqtt
        where = f"MQTT broker {m.host}:{m.port}"
        try:
            self._client.connect(m.host, m.port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            raise DaemonError(f"{where} unreachable ({e}): cannot confirm that the daemon "
                              "picks up the model (--no-reload installs it for the next "
                              "restart)") from None
        self._client.loop_start()
        if not self._ready.wait(timeout) or self._error:
            self.close()
            raise DaemonError(f"{where}: {self._error or 'no answer to the subscription'}")

    def wait(self, ok: Callable[[dict[str, Any]], bool], timeout: float,
             alive: Callable[[], bool] | None = None) -> bool:
        """True once a status satisfies ok; False on timeout or when alive() turns False."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.last = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                pass
            else:
                if ok(self.last):
                    return True
            if alive is not None and not alive():
                return False
        return False

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


__all__ = ["FRESH_FRAME_S", "Daemon", "DaemonError", "StatusWatcher", "describe_status",
           "find_daemon", "find_daemons", "runs_model", "systemd_main_pid"]
