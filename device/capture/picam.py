"""Raspberry Pi camera through picamera2 (libcamera).

picamera2 comes from apt on the Pi (python3-picamera2) and exists nowhere else, so it
is imported only here, inside open().
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from device.capture.base import CaptureError, Frame, FrameSource


def picamera2_available() -> bool:
    """True when picamera2 imports and libcamera lists at least one camera."""
    try:
        mod = importlib.import_module("picamera2")
        return bool(mod.Picamera2.global_camera_info())
    except Exception:  # ImportError, or libcamera failing without a camera
        return False


class PiCameraSource(FrameSource):
    live = True
    finite = False

    def __init__(self, width: int = 640, height: int = 480, fps: float | None = 10.0,
                 camera_num: int = 0) -> None:
        self.width, self.height = width, height
        self.fps = fps
        self.camera_num = camera_num
        self._cam: Any = None
        self._index = 0

    def describe(self) -> str:
        return f"picamera2:{self.camera_num} {self.width}x{self.height}"

    def open(self) -> None:
        try:
            mod = importlib.import_module("picamera2")
        except ImportError as e:
            raise CaptureError("picamera2 is not installed (on the Pi: apt install "
                               "python3-picamera2 and a venv with --system-site-packages)") from e
        try:
            cam = mod.Picamera2(self.camera_num)
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            # "RGB888" is libcamera's name for B,G,R byte order: OpenCV's BGR as-is.
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls=controls, buffer_count=2)
            cam.configure(config)
            cam.start()
        except Exception as e:
            raise CaptureError(f"cannot open Pi camera {self.camera_num}: {e}") from e
        self._cam = cam
        self._index = 0

    def read(self) -> Frame | None:
        if self._cam is None:
            raise CaptureError(f"{self.describe()} is not open")
        try:
            image = self._cam.capture_array("main")
        except Exception as e:
            raise CaptureError(f"Pi camera stopped delivering frames: {e}") from e
        if image is None or image.ndim != 3:
            raise CaptureError("Pi camera returned an empty frame")
        if image.shape[2] == 4:  # XRGB8888 configs carry a padding byte
            image = image[:, :, :3]
        i = self._index
        self._index += 1
        return Frame(image, time.monotonic(), i)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        finally:
            cam.close()
