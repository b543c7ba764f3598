"""OpenCV VideoCapture source: a V4L2/USB index, an RTSP/HTTP URL or a video file."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2

from device.capture.base import CaptureError, Frame, FrameSource

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def redact(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://***@host/x: URLs end up in logs and status."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


class OpenCVSource(FrameSource):
    def __init__(self, spec: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.spec = spec
        self.width, self.height, self.req_fps = width, height, fps
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        # A /dev/ node is a camera (V4L2), even while it is absent.
        is_file = (isinstance(spec, str) and not _URL.match(spec)
                   and not spec.startswith("/dev/"))
        self.finite = is_file
        self.live = not is_file
        self.fps = fps

    def describe(self) -> str:
        if isinstance(self.spec, int):
            return f"opencv:/dev/video{self.spec}"
        if self.spec.startswith("/dev/"):
            return f"opencv:{self.spec}"
        return f"{'file' if self.finite else 'stream'}:{redact(self.spec)}"

    def open(self) -> None:
        if self.finite and not Path(str(self.spec)).is_file():
            raise CaptureError(f"video file not found: {self.spec}")
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"cannot open {self.describe()}")
        if self.live:
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.req_fps:
                cap.set(cv2.CAP_PROP_FPS, self.req_fps)
            # A deep driver queue is exactly the stale-frame backlog we avoid upstream.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            native = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(native) if native and native > 0 else (self.req_fps or 25.0)
        self._cap = cap
        self._index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CaptureError(f"{self.describe()} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.finite:
                return None
            raise CaptureError(f"{self.describe()} stopped delivering frames")
        i = self._index
        self._index += 1
        # Files: index / fps rather than CAP_PROP_POS_MSEC, which some containers
        # report as 0 or with jitter; a replay must give the same windows everywhere.
        ts = i / (self.fps or 25.0) if self.finite else time.monotonic()
        return Frame(image, ts, i)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
