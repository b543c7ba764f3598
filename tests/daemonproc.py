"""Run `moodcam run` as a real process for the daemon tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.broker import Subscriber

ROOT = Path(__file__).resolve().parent.parent
DEV = "shop-12"


def write_config(path: Path, model_dir: Path, port: int | None, **extra: str) -> Path:
    mqtt = (f"[mqtt]\nport = {port}\nhost = \"127.0.0.1\"\nstatus_interval_s = 1\n"
            "reconnect_min_s = 0.2\nreconnect_max_s = 0.5\n" if port else
            "[mqtt]\nenabled = false\n")
    path.write_text(
        f'device_id = "{DEV}"\n'
        '[camera]\nsource = "sample"\nmax_fps = 5.0\n'
        f'[model]\ndir = "{model_dir}"\n'
        "[aggregate]\nwindow_s = 2\n"
        f'[spool]\npath = "{path.parent / "spool.sqlite"}"\n'
        # The test machine's clock is trusted unless a test says otherwise (extra["clock"]).
        + ("" if "clock" in extra else '[clock]\ntrust = "always"\n')
        + mqtt + "".join(extra.values()))
    return path


def clear_of_the_hour(need_s: float = 120.0) -> None:
    """Wait until the wall clock's next hour is at least need_s away. Windows align to
    the wall clock (device/aggregate.py), so a test that expects ONE window_s = 3600
    window splits in two when it runs across the hour (tests/test_aggregate.py covers that
    split); a CI run that straddled 08:00 once failed so."""
    left = 3600.0 - time.time() % 3600.0
    if left < need_s:
        time.sleep(left + 1.0)


def start(config: Path | None, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "device.cli", "run", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def finish(p: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def moods(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m) for m in sub.on(f"moodcam/{DEV}/mood")]


def statuses(sub: Subscriber) -> list[dict[str, Any]]:
    """Every status the daemon published, parsed, oldest first."""
    return [json.loads(m) for m in sub.on(f"moodcam/{DEV}/status")]


def last_status(sub: Subscriber) -> dict[str, Any]:
    s = statuses(sub)
    return s[-1] if s else {}


@contextmanager
def daemon(config: Path | None, *args: str, env: dict[str, str] | None = None,
           ) -> Iterator[subprocess.Popen[str]]:
    """A running daemon that is killed if the test leaves it running."""
    p = start(config, *args, env=env)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def terminate(p: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    """SIGTERM, as systemd stops the service, then wait for the exit."""
    p.send_signal(signal.SIGTERM)
    return finish(p, timeout)


class NotifySocket:
    """A stand-in for systemd's notify socket that records every sd_notify line."""

    def __init__(self, path: Path | None = None) -> None:
        # Without a path: an abstract socket (systemd uses both kinds).
        self.name = str(path) if path else f"@moodcam-test-{os.getpid()}-{id(self)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.name if path else "\0" + self.name[1:])
        self.sock.settimeout(0.2)
        self.lines: list[tuple[float, str]] = []  # (monotonic time, line)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def env(self, watchdog_s: float = 1.0) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.name, "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.lines += [(now, ln) for ln in data.splitlines()]

    def text(self) -> list[str]:
        return [ln for _, ln in self.lines]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
