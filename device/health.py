"""What the status says about the camera, and fault lines.

A grabber's own state ("ok", "retrying", "lost", ...) is what it knows; a driver can
also hang inside a read, where no exception tells it. So a camera that says "ok" but
has delivered nothing for CAMERA_STALL_S is reported lost too.
"""

from __future__ import annotations

import time

from device.capture import LatestFrameGrabber
from device.config.load import clip

CAMERA_STALL_S = 10.0
MAX_FAULT_CHARS = 300  # status/2 caps each fault line


def fault_line(problem: str) -> str:
    """One line, at most MAX_FAULT_CHARS characters."""
    return clip(" ".join(problem.split()), MAX_FAULT_CHARS - 30)


def camera_state(g: LatestFrameGrabber, now: float | None = None) -> str:
    """status camera.state: "ok", "retrying" or "lost"."""
    now = time.monotonic() if now is None else now
    if g.state == "ok" and g.last_read is not None and now - g.last_read > CAMERA_STALL_S:
        return "lost"
    return {"ok": "ok", "starting": "ok", "retrying": "retrying"}.get(g.state, "lost")


def camera_fault(g: LatestFrameGrabber, now: float | None = None) -> str | None:
    """status faults.camera: why the camera is not ok, or None when it is."""
    now = time.monotonic() if now is None else now
    state = camera_state(g, now)
    if state == "ok":
        return None
    if g.state == "ok" and g.last_read is not None:
        return f"{g.source.describe()}: no frame for {now - g.last_read:.0f} s"
    return f"{state}: {g.last_error or g.state}"


__all__ = ["CAMERA_STALL_S", "MAX_FAULT_CHARS", "camera_fault", "camera_state", "fault_line"]
