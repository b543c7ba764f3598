"""A folder or glob of still images, replayed as a finite stream at a nominal fps.

A folder removed while it plays is a failure (CaptureError), not the end of the
stream: the grabber reopens it with backoff and it plays again once it is back."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import cv2

from device.capture.base import CaptureError, Frame, FrameSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def list_images(spec: str) -> list[Path]:
    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(f) for f in glob.glob(spec)
                 if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(f for f in files if f.is_file())


class FolderSource(FrameSource):
    finite = True
    live = False

    def __init__(self, spec: str, fps: float = 1.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.spec = spec
        self.fps = fps
        self._fps = fps
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    def describe(self) -> str:
        return f"images:{self.spec}"

    def open(self) -> None:
        self._files = list_images(self.spec)
        if not self._files:
            raise CaptureError(f"no images found in {self.spec}")
        self._pos = 0
        self._index = 0

    def read(self) -> Frame | None:
        while self._pos < len(self._files):
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                if not path.parent.is_dir():
                    # The folder went away (an unmounted share, a removed card): that is
                    # a source failing, retried like a lost camera, not the end of it.
                    raise CaptureError(f"{self.describe()}: {path.parent} is gone")
                log.warning("skipping unreadable image %s", path)
                continue
            i = self._index
            self._index += 1
            return Frame(image, i / self._fps, i)
        return None

    def close(self) -> None:
        self._files = []

    @property
    def files(self) -> list[Path]:
        return list(self._files)
