"""Capture stage: frame sources behind one interface, and the latest-frame grabber.

Source specs (config `camera.source`, `moodcam replay SOURCE`):
  auto          Pi camera if one is attached, else /dev/video0 if it delivers frames,
                else the sample source
  picamera      the Pi camera (picamera2)
  sample        the built-in synthetic camera (needs scikit-image)
  0, 1, ...     an OpenCV/V4L2 device index
  /dev/...      a V4L2 device node (e.g. /dev/video0, /dev/v4l/by-id/...); may be absent
                at start: the daemon retries it like any camera
  rtsp://...    any URL OpenCV can open (RTSP, HTTP MJPEG, ...)
  FILE          a video file
  DIR or GLOB   a folder or glob of still images
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from device.capture.base import CaptureError, Frame, FrameSource
from device.capture.folder import IMAGE_SUFFIXES, FolderSource
from device.capture.grabber import CameraState, LatestFrameGrabber
from device.capture.opencv import OpenCVSource
from device.capture.picam import PiCameraSource, picamera2_available
from device.capture.sample import SampleSource

log = logging.getLogger(__name__)

__all__ = [
    "CameraState", "CaptureError", "FolderSource", "Frame", "FrameSource",
    "LatestFrameGrabber", "OpenCVSource", "PiCameraSource", "SampleSource", "make_source",
]


def _opens(source: FrameSource) -> bool:
    """Whether a source opens and delivers a frame (on a Pi, /dev/video0 may be a codec
    node rather than a camera)."""
    try:
        source.open()
        return source.read() is not None
    except CaptureError:
        return False
    finally:
        source.close()


def make_source(spec: str, width: int = 640, height: int = 480, fps: float = 10.0,
                realtime: bool = True, sample_frames: int | None = None) -> FrameSource:
    """Build (not open) the source a spec names. realtime=False is for replay: finite
    sources run on their own timeline and the sample source becomes finite."""
    s = spec.strip()
    if s == "auto":
        if picamera2_available():
            return PiCameraSource(width, height, fps)
        if Path("/dev/video0").exists() and _opens(OpenCVSource(0, width, height, fps)):
            return OpenCVSource(0, width, height, fps)
        log.warning("no camera found (no Pi camera, no /dev/video0): using the sample source")
        return SampleSource(width, height, fps, realtime=realtime, frames=sample_frames)
    if s == "picamera":
        return PiCameraSource(width, height, fps)
    if s == "sample":
        return SampleSource(width, height, fps, realtime=realtime, frames=sample_frames)
    if s.isdigit():
        return OpenCVSource(int(s), width, height, fps)
    if "://" in s or s.startswith("/dev/"):
        return OpenCVSource(s, width, height, fps)
    p = Path(s)
    if p.is_dir():
        return FolderSource(s, fps)
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return FolderSource(glob.escape(s), fps)
        return OpenCVSource(s, width, height, fps)
    if any(c in s for c in "*?["):
        return FolderSource(s, fps)
    raise CaptureError(f"camera source {spec!r}: no such file, folder or device "
                       "(use auto, picamera, sample, an index, a URL, a file or a folder)")
