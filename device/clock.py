"""The clocks: monotonic for every duration, wall time only to stamp windows.

A Raspberry Pi has no real-time clock: it boots with its last shutdown's time or 1970
and NTP steps the wall clock later, by hours or years. So windows, tracks, dwell and
uptime are measured on the monotonic clock, and `synchronized()` says whether the wall
time may be trusted yet.

MOODCAM_CLOCK_OFFSET_FILE (a test and diagnostic hook, never set in the unit): names a
file holding a number of seconds added to the wall clock, re-read at most every 0.2 s,
so a test can step the wall clock of a real daemon process (libfaketime breaks
Python's time.sleep).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import time
from pathlib import Path
from typing import Literal, Protocol

OFFSET_ENV = "MOODCAM_CLOCK_OFFSET_FILE"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    def synchronized(self) -> tuple[bool, str]: ...


def boot_id() -> str:
    """This boot's id: a monotonic time means something only within one boot."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or "unknown"
    except OSError:
        return "unknown"


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): only modes (in) and status (out; after offset, freq,
    # maxerror, esterror) are used; the padding covers the remaining fields.
    _fields_ = [("modes", ctypes.c_uint), ("_pad0", ctypes.c_long * 4),
                ("status", ctypes.c_int), ("_pad1", ctypes.c_long * 32)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_synchronized() -> bool | None:
    """The kernel's NTP state read with adjtimex(modes=0) (read-only, no privilege):
    True/False, or None when the call is not permitted (systemd's ProtectClock) or
    unavailable."""
    libc = _libc()
    if libc is None:
        return None
    try:
        tx = _Timex()
        tx.modes = 0
        rc = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if rc < 0:
        return None
    return rc != _TIME_ERROR and not tx.status & _STA_UNSYNC


class SystemClock:
    def __init__(self, trust: Literal["ntp", "file", "always"] = "ntp",
                 sync_file: Path = Path("/run/systemd/timesync/synchronized")) -> None:
        self.trust = trust
        self.sync_file = sync_file
        offset_file = os.environ.get(OFFSET_ENV)
        self._offset_file = Path(offset_file) if offset_file else None
        self._offset = 0.0
        self._offset_read = -1.0

    def monotonic(self) -> float:
        return time.monotonic()

    def _extra(self) -> float:
        if self._offset_file is None:
            return 0.0
        now = time.monotonic()
        if self._offset_read < 0 or now - self._offset_read >= 0.2:
            self._offset_read = now
            try:
                text = self._offset_file.read_text().strip()
            except OSError:  # no file: no offset
                self._offset = 0.0
            else:
                # Empty or unparsable: caught mid-write (a test stepping the clock once
                # read "" as 0, a step back); the last offset stands.
                with contextlib.suppress(ValueError):
                    self._offset = float(text) if text else self._offset
        return self._offset

    def wall(self) -> float:
        return time.time() + self._extra()

    def synchronized(self) -> tuple[bool, str]:
        if self.trust == "always":
            return True, "config"
        if self.sync_file.exists():
            return True, "timesyncd" if self.sync_file.name == "synchronized" else "file"
        if self.trust == "ntp" and kernel_synchronized():
            return True, "kernel"
        return False, "none"


__all__ = ["OFFSET_ENV", "Clock", "SystemClock", "boot_id", "kernel_synchronized"]
