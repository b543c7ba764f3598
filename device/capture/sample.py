"""A built-in synthetic camera: a real face (scikit-image's astronaut photo) moving and
zooming on a 640x480 canvas, so a fresh machine with no camera runs the whole pipeline.

The scenario repeats every 24 s and holds three "people" (the face, its mirror image and
a small copy) who enter, move, zoom and leave, so detection at several sizes, tracking,
dwell time and track endings all happen. scikit-image is a dev dependency only: without
it this source fails with a clear message instead of pretending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from device.capture.base import CaptureError, Frame, FrameSource

PERIOD_S = 24.0
# Where the face sits in skimage.data.astronaut() (YuNet box, rounded), and the
# head-and-shoulders patch cut around it.
_FACE = (178, 63, 90, 113)
_PATCH = (118, 8, 210, 240)


@dataclass(frozen=True)
class _Actor:
    t0: float
    t1: float
    size0: float  # face width in pixels at t0 and t1
    size1: float
    c0: tuple[float, float]  # face centre at t0 and t1
    c1: tuple[float, float]
    mirrored: bool = False


ACTORS = (
    _Actor(0.0, 8.0, 110, 150, (130, 200), (330, 220)),
    _Actor(10.0, 20.0, 70, 170, (430, 220), (450, 250), mirrored=True),
    _Actor(13.0, 20.0, 60, 60, (80, 330), (95, 330)),
)


def astronaut_bgr() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as e:
        raise CaptureError("the 'sample' camera needs scikit-image (pip install "
                           "scikit-image); configure a real camera instead") from e
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * u


class SampleSource(FrameSource):
    """Synthetic camera. realtime=True paces frames at fps on the wall clock (the
    daemon); realtime=False returns frames as fast as asked on an index/fps timeline
    (replay, tests, bench). frames=None runs forever; a number makes it finite."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 10.0,
                 realtime: bool = True, frames: int | None = None) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.width, self.height, self.fps = width, height, fps
        self._fps = fps
        self.realtime = realtime
        self.live = realtime
        self.frames = frames
        self.finite = frames is not None
        self._patch: np.ndarray | None = None
        self._bg = np.zeros((height, width, 3), np.uint8)
        self._index = 0
        self._t_open = 0.0

    def describe(self) -> str:
        return f"sample:astronaut {self.width}x{self.height}@{self.fps:g}"

    def open(self) -> None:
        img = astronaut_bgr()
        x, y, w, h = _PATCH
        self._patch = img[y:y + h, x:x + w].copy()
        # A soft vertical gradient: featureless enough to hold no faces, not flat black.
        ramp = np.linspace(70, 150, self.height, dtype=np.float32)[:, None, None]
        self._bg = np.broadcast_to(ramp, (self.height, self.width, 3)).astype(np.uint8)
        self._index = 0
        self._t_open = time.monotonic()

    def close(self) -> None:
        self._patch = None

    def render(self, t: float) -> np.ndarray:
        """The canvas at scenario time t (seconds); pure, for tests."""
        if self._patch is None:
            raise CaptureError("sample source is not open")
        canvas = self._bg.copy()
        t = t % PERIOD_S
        fx, fy, fw, fh = _FACE
        px, py, pw, ph = _PATCH
        for a in ACTORS:
            if not a.t0 <= t < a.t1:
                continue
            u = (t - a.t0) / (a.t1 - a.t0)
            k = _lerp(a.size0, a.size1, u) / fw
            cx, cy = _lerp(a.c0[0], a.c1[0], u), _lerp(a.c0[1], a.c1[1], u)
            patch = self._patch[:, ::-1] if a.mirrored else self._patch
            sw, sh = max(1, round(pw * k)), max(1, round(ph * k))
            scaled = cv2.resize(patch, (sw, sh), interpolation=cv2.INTER_AREA)
            # The face centre inside the patch (mirrored patches flip it horizontally).
            ofx = (fx - px + fw / 2) if not a.mirrored else (pw - (fx - px + fw / 2))
            x0 = round(cx - ofx * k)
            y0 = round(cy - (fy - py + fh / 2) * k)
            _paste(canvas, scaled, x0, y0)
        return canvas

    def read(self) -> Frame | None:
        if self.frames is not None and self._index >= self.frames:
            return None
        i = self._index
        self._index += 1
        if self.realtime:
            due = self._t_open + i / self._fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.monotonic() - self._t_open
            return Frame(self.render(t), time.monotonic(), i)
        t = i / self._fps
        return Frame(self.render(t), t, i)


def _paste(canvas: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(w, x0 + pw), min(h, y0 + ph)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    canvas[cy0:cy1, cx0:cx1] = patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
