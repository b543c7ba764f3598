"""When to detect and when to classify: the work-saving schedule of the pipeline.

Pure policy and a cheap scene check; the pipeline applies it. The previous behaviour
(detect and classify every face of every frame) is `Schedule(1, 0.0, 1, 1)`.

- Detection runs on every `detect_every`-th frame; in between the tracker carries the
  boxes of the faces seen at the last detection. A frame whose tiny gray thumbnail
  differs from the last detected frame's by more than `scene_change` (mean absolute
  difference, 0-255) is detected at once, so a cut or a camera bump is never carried.
- Classification is per track: a new track is classified at once, an unsettled one at
  every detection, a settled one (see track.settled) every `classify_every` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB = (32, 24)  # thumbnail size for the scene check: a few hundred pixels


@dataclass(frozen=True, slots=True)
class Schedule:
    detect_every: int = 1
    scene_change: float = 0.0
    classify_every: int = 1
    settle_after: int = 1

    @property
    def every_frame(self) -> bool:
        """Detect and classify every face of every frame (the previous behaviour)."""
        return self.detect_every <= 1 and self.classify_every <= 1


def detections_needed(min_hits: int, detect_every: int) -> int:
    """Detections a track needs so that they span what min_hits consecutive frames span
    (detect_every 1: min_hits; 2: 3 -> 2, i.e. frames 0 and 2)."""
    if detect_every <= 1 or min_hits <= 1:
        return max(1, min_hits)
    return 1 + -(-(min_hits - 1) // detect_every)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A THUMB-sized float32 gray-ish summary of a frame (channels averaged). Bilinear
    samples, not an area average: 1/100 of the cost, and the check compares a mean over
    hundreds of them, which sensor noise barely moves."""
    small = cv2.resize(frame, THUMB, interpolation=cv2.INTER_LINEAR)
    return (small.mean(axis=2) if small.ndim == 3 else small).astype(np.float32)


class DetectGate:
    """Decides per frame whether the detector runs (see the module docstring)."""

    def __init__(self, detect_every: int, scene_change: float) -> None:
        self.detect_every = max(1, detect_every)
        self.scene_change = scene_change
        self._since = 0
        self._ref: np.ndarray | None = None
        self.scene_cuts = 0  # detections forced by the scene check

    def due(self, frame: np.ndarray) -> bool:
        if self.detect_every == 1:
            return True
        self._since += 1
        if self._ref is None or self._since >= self.detect_every:
            return self._detected(frame)
        if self.scene_change <= 0:
            return False
        thumb = thumbnail(frame)
        if (self._ref.shape != thumb.shape
                or float(np.abs(thumb - self._ref).mean()) > self.scene_change):
            self.scene_cuts += 1
            return self._detected(frame, thumb)
        return False

    def _detected(self, frame: np.ndarray, thumb: np.ndarray | None = None) -> bool:
        self._since = 0
        self._ref = thumbnail(frame) if thumb is None else thumb
        return True
