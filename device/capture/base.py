"""The capture interface every frame source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import numpy as np


class CaptureError(RuntimeError):
    """The source cannot be opened or stopped delivering frames (camera absent or lost)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One BGR uint8 frame.

    ts is on the source's own timeline: time.monotonic() for live sources (the wall
    clock may step; it only stamps windows, see device/aggregate.py), media time (or
    index / fps) for files and folders, so a replay is deterministic.
    """

    image: np.ndarray
    ts: float
    index: int


class FrameSource(ABC):
    """open() -> read()* -> close(). read() returns None at the end of a finite source
    and raises CaptureError when a live source fails."""

    #: True for files, folders and bounded synthetic runs: they end instead of failing.
    finite: bool = False
    #: True when the source produces frames at its own pace (a camera); False when a
    #: read returns as fast as it can decode, so a live consumer must pace it.
    live: bool = True
    #: Nominal frame rate, if the source knows one.
    fps: float | None = None

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name for logs and status (never credentials)."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
