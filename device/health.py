"""What the status says: the retained status payload, the camera's state, fault lines.

A grabber's own state ("ok", "retrying", "lost", ...) is what it knows; a driver can
also hang inside a read, where no exception tells it. So a camera that says "ok" but
has delivered nothing for CAMERA_STALL_S is reported lost too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from device import __version__
from device.aggregate import iso
from device.capture import LatestFrameGrabber
from device.config.load import clip
from device.pipeline import model_info

if TYPE_CHECKING:
    from device.daemon import Daemon

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


def status_payload(d: Daemon, state: str | None = None) -> dict[str, Any]:
    """The daemon's retained status (device/schemas/status.schema.json)."""
    p, g = d.pipeline, d.grabber
    assert p is not None and g is not None
    cam_state = camera_state(g)
    faults = dict(d.faults)
    ack_fault = getattr(d.publisher, "ack_fault", None)
    if ack_fault and "spool" not in faults:
        faults["spool"] = ack_fault
    if state is None:
        state = "running" if cam_state == "ok" and not faults else "degraded"
    age = (round(time.monotonic() - d.last_frame, 3) if d.last_frame else None)
    connected = bool(getattr(d.publisher, "connected", False))
    uptime = max(0.0, d.clock.monotonic() - d.started)
    counts = d.store.counts() if d.store else {"depth": 0, "dropped": 0, "held": 0}
    return {
        "schema": "moodcam/status/2",
        "device_id": d.cfg.device_id,
        "version": __version__,
        "state": state,
        # From the wall clock now: consistent with uptime_s across clock steps.
        "started_at": iso(round(d.clock.wall() - uptime)),
        "uptime_s": round(uptime, 1),
        "model": {**model_info(p.classifier), "runtime": p.classifier.runtime,
                  "labels": list(p.classifier.labels)},
        "detector": p.detector.name,
        "camera": {"source": g.source.describe(), "state": cam_state,
                   "frames": d.frames, "last_frame_age_s": age},
        "fps": d.fps,
        "spool": {**counts, "rejected": d.spool.rejected_count if d.spool else 0},
        "mqtt": {"connected": connected},
        "content_id": p.aggregator.content_id,
        "last_window_id": d.last_window_id,
        "clock": {"synchronized": d.synced, "source": d.clock_source},
        "faults": faults,
    }


def status_line(d: Daemon) -> str:
    """One line for `systemctl status` (sd_notify STATUS=)."""
    g = d.grabber
    assert g is not None and d.pipeline is not None
    line = (f"camera {g.state}, {d.fps:.1f} fps, {d.pipeline.tracker.active} "
            f"viewers now, {d.pipeline.windows_emitted} windows, spool "
            f"{d.store.counts()['depth'] if d.store else 0}")
    if d.faults:
        line += "; faults: " + "; ".join(f"{k}: {v}" for k, v in d.faults.items())
    return line


__all__ = ["CAMERA_STALL_S", "MAX_FAULT_CHARS", "camera_fault", "camera_state", "fault_line",
           "status_line", "status_payload"]
