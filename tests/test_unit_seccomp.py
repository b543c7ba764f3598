"""The daemon runs under its unit's SystemCallFilter: every runtime it loads at start and
calls per frame (onnxruntime or OpenCV's DNN for YuNet, the TFLite interpreter, paho,
sqlite, sd_notify) stays inside `@system-service` minus the groups the unit denies.

There is no systemd service manager here, so tests/seccomp.py rebuilds the filter from
systemd/moodcam.service with systemd-analyze's groups and loads it with libseccomp
before exec'ing `moodcam run`, as systemd does between fork and exec.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.payloads import validate_mood
from tests.broker import Broker, Subscriber
from tests.daemonproc import (
    DEV,
    ROOT,
    NotifySocket,
    last_status,
    moods,
    terminate,
    write_config,
)
from tests.seccomp import unit_filter
from tests.test_spool_faults import fill, tiny_fs  # noqa: F401  (tiny_fs: a fixture)

UNIT = ROOT / "systemd" / "moodcam.service"
LAUNCH = [sys.executable, str(ROOT / "tests" / "seccomp.py"), str(UNIT), "--"]

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                       reason="needs systemd-analyze (package systemd) to expand the unit's "
                              "syscall groups"),
    pytest.mark.skipif(ctypes.util.find_library("seccomp") is None,
                       reason="needs libseccomp (package libseccomp2) to load the filter"),
]

PTRACE_TRACEME = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
                  "rc = libc.ptrace(0, 0, 0, 0); "
                  "print('ok' if rc == 0 else os.strerror(ctypes.get_errno()))")


def test_the_rebuilt_filter_is_the_units() -> None:
    allowed, err = unit_filter(UNIT)
    assert err == 1  # EPERM, SystemCallErrorNumber=EPERM
    # Allowed by @system-service (and @default, which an allow list implies).
    assert {"read", "openat", "mmap", "clone", "execve", "socket", "connect",
            "sched_getaffinity", "futex", "exit_group"} <= allowed
    # Removed by the unit's deny line: @privileged, @mount, @debug, @raw-io, @reboot, @swap.
    assert not {"mount", "ptrace", "perf_event_open", "iopl", "reboot", "swapon",
                "chroot", "setdomainname"} & allowed
    # ProtectClock=yes: systemd denies @clock as well.
    assert not {"adjtimex", "clock_adjtime", "clock_settime", "settimeofday"} & allowed


KERNEL_SYNC = "from device.clock import kernel_synchronized; print(kernel_synchronized())"


def test_the_kernel_clock_probe_reads_the_units_denial_as_unknown() -> None:
    """trust = "ntp" asks the kernel with adjtimex, which ProtectClock denies: the daemon
    reads EPERM as "unknown" (and goes on to the timesyncd file), it does not fail."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plain = subprocess.run([sys.executable, "-c", KERNEL_SYNC], capture_output=True,
                           text=True, timeout=30, env=env)
    assert plain.stdout.strip() in ("True", "False"), plain.stderr
    filtered = subprocess.run([*LAUNCH, sys.executable, "-c", KERNEL_SYNC],
                              capture_output=True, text=True, timeout=30, env=env)
    assert filtered.returncode == 0, filtered.stderr
    assert filtered.stdout.strip() == "None"


def test_the_filter_bites() -> None:
    """The launcher really filters: a call @debug holds fails with EPERM under it."""
    plain = subprocess.run([sys.executable, "-c", PTRACE_TRACEME], capture_output=True,
                           text=True, timeout=30)
    if plain.stdout.strip() != "ok":
        pytest.skip(f"ptrace(TRACEME) fails here even unfiltered: {plain.stdout.strip()}")
    filtered = subprocess.run([*LAUNCH, sys.executable, "-c", PTRACE_TRACEME],
                              capture_output=True, text=True, timeout=30)
    assert filtered.returncode == 0, filtered.stderr
    assert filtered.stdout.strip() == "Operation not permitted"


# The shape of qemu-user's QEMU_STRACE lines (qemu 7.2, Debian bookworm), as
# deploy/pi-emulated.sh collects them from the daemon on emulated aarch64; 98 is
# aarch64's futex, 117 its ptrace (numbers qemu's table failed to name).
TRACE = """\
4711 openat(AT_FDCWD,"/etc/ld.so.cache",O_RDONLY|O_CLOEXEC) = 3
4711 newfstatat(3,"",0x0000005502ff8c40,0x1000) = 0
4711 ppoll(0x0000005503e0c0e8,1,0x0000005503e0c0f8,0,8) = 1
4713 pselect6(5,0x55047ff5f8,0,0,0x55047ff568,0)4711 clock_nanosleep(0,0,0x5503,0) = 0
 = 1
4711 Unknown syscall 98
4711 clock_adjtime(0,0x5503e0c0e8) = -1 errno=1 (Operation not permitted)
2026-12-05 08:50:01 INFO device.daemon: window pi-emulated/ab12/1: 1 viewers
2026-12-05 08:50:01 INFO device.windowstore: recovered 1 window(s) from the last checkpoint
"""


def test_a_traced_aarch64_run_is_checked_against_the_units_filter(tmp_path: Path) -> None:
    """deploy/pi-emulated.sh's check: every call qemu traced must be one the filter allows;
    a call outside it is named, whether qemu named it or only numbered it."""
    log = tmp_path / "strace.log"
    check = [sys.executable, str(ROOT / "tests" / "seccomp.py"), str(UNIT), "--check-trace",
             str(log)]
    log.write_text(TRACE)
    ok = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # futex (98) named by libseccomp; the log lines are not calls.
    assert "7 distinct calls" in ok.stdout
    assert "denied, handled: clock_adjtime" in ok.stdout  # ProtectClock's, read as unknown
    for bad in ("4711 ptrace(0,0,0,0) = 0\n", "4711 Unknown syscall 117\n"):
        log.write_text(TRACE + bad)
        denied = subprocess.run(check, capture_output=True, text=True, timeout=60)
        assert denied.returncode == 1
        assert "DENIED: ptrace" in denied.stdout
    log.write_text("no trace here\n")
    assert subprocess.run(check, capture_output=True, text=True, timeout=60).returncode == 1


@pytest.mark.broker
@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_the_daemon_detects_classifies_and_publishes_under_the_units_filter(
        backend: str, mosquitto: Broker, model_dir: Path, yunet_path: Path,
        tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port, detector=(
        f'[detector]\nkind = "yunet"\nbackend = "{backend}"\nyunet_model = "{yunet_path}"\n'))
    notify = NotifySocket(tmp_path / "notify.sock")
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    p = subprocess.Popen([*LAUNCH, sys.executable, "-m", "device.cli", "run", "--config",
                          str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                              **notify.env(watchdog_s=2.0)})
    try:
        assert sub.wait_for(lambda: len(moods(sub)) >= 3, timeout=60), p.stderr
        rc, _, err = terminate(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        notify.close()
    assert rc == 0, err
    assert "Traceback" not in err and "not permitted" not in err.lower(), err
    assert f"{backend})" in err  # the start-up line names the detector's backend
    got = moods(sub)
    for m in got:
        validate_mood(m)
    # The sample's face was found and classified: the detector and the model ran.
    assert sum(sum(m["detections"].values()) for m in got) > 0
    assert "READY=1" in notify.text() and "WATCHDOG=1" in notify.text()


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_the_daemon_lives_through_its_faults_under_the_units_filter(
        mosquitto: Broker, model_dir: Path, tiny_fs: Path, tmp_path: Path,  # noqa: F811
        astronaut_bgr: np.ndarray) -> None:
    """The paths a short run never takes, under the filter: the camera (an image folder)
    goes and comes back (reopen), SIGHUP reloads config and model, the spool's disk fills
    and frees, the broker crashes and returns (reconnect). None may need a denied call."""
    folder = tmp_path / "frames"

    def frames() -> None:
        folder.mkdir()
        for i in range(150):
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), cv2.resize(astronaut_bgr, (320, 240)))

    frames()
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port)
    cfg.write_text(cfg.read_text()
                   .replace('source = "sample"', f'source = "{folder}"\nretry_initial_s = 0.2'
                            "\nretry_max_s = 1.0")
                   .replace(str(tmp_path / "spool.sqlite"), str(tiny_fs / "spool.sqlite")))
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])

    def since(n: int, pred: Callable[[dict[str, Any]], bool]) -> bool:
        return sub.wait_for(lambda: any(pred(m) for m in moods(sub)[n:]), timeout=40)

    def state(pred: Callable[[dict[str, Any]], bool]) -> bool:
        return sub.wait_for(lambda: pred(last_status(sub)), timeout=40)

    p = subprocess.Popen([*LAUNCH, sys.executable, "-m", "device.cli", "run", "--config",
                          str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin",
                                                   "PYTHONPATH": str(ROOT)})
    try:
        assert since(0, lambda m: m["frames"] > 0), "no frames at start"
        shutil.rmtree(folder)
        assert state(lambda s: "camera" in s.get("faults", {})), "the camera loss"
        frames()
        assert since(len(moods(sub)), lambda m: m["frames"] > 0), "the camera's return"
        p.send_signal(signal.SIGHUP)
        fill(tiny_fs / "filler")
        assert state(lambda s: "spool" in s.get("faults", {})), "the full disk"
        (tiny_fs / "filler").unlink()
        assert state(lambda s: not s.get("faults")), "the freed disk"
        mosquitto.kill()
        mosquitto.start()
        n = len(moods(sub))
        assert sub.wait_for(lambda: len(moods(sub)) >= n + 2, timeout=40), "reconnect"
        rc, _, err = terminate(p)
    finally:
        sub.close()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "not permitted" not in err.lower(), err[-3000:]
    for line in ("is gone", "reloaded: model", "database or disk is full", "works again",
                 "MQTT: connected"):
        assert line in err, f"{line!r} not logged:\n{err[-3000:]}"
    for m in moods(sub):
        validate_mood(m)
