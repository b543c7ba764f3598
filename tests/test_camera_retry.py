"""A camera that is absent at start, comes late, or hangs: the grabber retries it with
bounded backoff (never a busy loop) and the status reports it honestly."""

from __future__ import annotations

import time

from device.capture import CaptureError, LatestFrameGrabber, OpenCVSource, make_source
from device.health import CAMERA_STALL_S, camera_fault, camera_state
from tests.test_capture import Scripted


def test_grabber_start_not_strict_retries_an_absent_v4l2_node_without_busy_looping(
        ) -> None:
    src = make_source("/dev/video97")  # a real V4L2 path that does not exist here
    assert isinstance(src, OpenCVSource) and src.live and not src.finite
    g = LatestFrameGrabber(src, retry_initial_s=0.05, retry_max_s=0.2)
    g.start(strict=False)
    try:
        assert g.state == "retrying" and g.get(timeout=0.1) is None
        time.sleep(1.5)
        assert g.state == "lost" and "cannot open opencv:/dev/video97" in (g.last_error or "")
        # Backoff 0.05, 0.1, 0.2, 0.2, ...: about 8 tries in 1.5 s, never a busy loop.
        assert 3 <= g.reopens <= 10, g.reopens
    finally:
        g.stop()
    assert g.state == "stopped"


class LateCamera(Scripted):
    """A camera absent for its first `absent` opens, then present."""

    def __init__(self, absent: int) -> None:
        super().__init__(period=0.01)
        self.absent = absent

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.absent:
            raise CaptureError("no camera")
        self.is_open = True


def test_grabber_absent_at_start_delivers_once_the_camera_appears() -> None:
    src = LateCamera(absent=3)
    g = LatestFrameGrabber(src, retry_initial_s=0.05, retry_max_s=0.1)
    g.start(strict=False)
    try:
        assert g.state == "retrying"
        assert g.get(timeout=3.0) is not None
        assert g.state == "ok" and src.opens == 4 and g.last_read is not None
    finally:
        g.stop()


def test_a_camera_that_hangs_inside_read_is_reported_lost() -> None:
    src = Scripted(period=0.01)
    g = LatestFrameGrabber(src)
    g.start()
    try:
        assert g.get(timeout=2.0) is not None and g.last_read is not None
        now = g.last_read + 1.0
        assert camera_state(g, now) == "ok" and camera_fault(g, now) is None
        # The driver stopped answering: the grabber still says "ok", the status does not.
        now = g.last_read + CAMERA_STALL_S + 1.0
        assert g.state == "ok" and camera_state(g, now) == "lost"
        assert camera_fault(g, now) == "scripted: no frame for 11 s"
    finally:
        g.stop()
    assert camera_state(g) == "lost" and camera_fault(g) == "lost: stopped"
