"""A capture thread that keeps only the newest frame.

The pipeline is slower than a camera on a Pi. Queuing frames would make every result
later than the last; instead the thread overwrites a single slot and the pipeline always
takes the freshest frame (older ones are counted as dropped). A failing camera is closed
and reopened with exponential backoff while the state says so; a camera that is absent
at start is retried the same way (start(strict=False)), so the daemon keeps running
and says so instead of exiting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from device.capture.base import CaptureError, Frame, FrameSource

log = logging.getLogger(__name__)

CameraState = Literal["starting", "ok", "retrying", "lost", "ended", "stopped"]


class LatestFrameGrabber:
    """States: "ok" while frames arrive; "retrying" after a failure while the backoff is
    still growing; "lost" once it has reached retry_max_s (reopening continues at that
    pace); "ended" at the end of a finite source; "stopped" after stop()."""

    def __init__(self, source: FrameSource, max_fps: float | None = None,
                 retry_initial_s: float = 1.0, retry_max_s: float = 30.0) -> None:
        if retry_initial_s <= 0 or retry_max_s < retry_initial_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")
        self.source = source
        self.max_fps = max_fps
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.state: CameraState = "starting"
        self.last_error: str | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.reopens = 0
        self.last_read: float | None = None  # monotonic time of the newest frame
        self._slot: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_handed = 0.0

    # -- lifecycle -------------------------------------------------------------
    def start(self, strict: bool = True) -> None:
        """Open the source now and start the reading thread. strict: a source that does
        not open raises CaptureError (replay, a camera swap that must work); otherwise
        the thread keeps reopening it with backoff while the state says "retrying"."""
        failed: str | None = None
        try:
            self.source.open()
        except CaptureError as e:
            if strict:
                raise
            failed = str(e)
        self.state = "ok" if failed is None else "retrying"
        self._thread = threading.Thread(target=self._run, args=(failed,), name="capture",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    # -- consumer side ---------------------------------------------------------
    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not handed out before, or None after timeout / at the end.

        With max_fps set, also waits so frames are handed out no faster than that.
        """
        if self.max_fps:
            wait = self._last_handed + 1.0 / self.max_fps - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, timeout))
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._slot is None and self.state not in ("ended", "stopped"):
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            frame, self._slot = self._slot, None
        if frame is not None:
            self._last_handed = time.monotonic()
        return frame

    # -- producer side ---------------------------------------------------------
    def _pace(self, next_due: float) -> float:
        """Non-live sources (files, synthetic) decode as fast as asked: hold them to their
        own fps (or max_fps) so a file plays in real time instead of being skipped."""
        if self.source.live:
            return next_due
        rates = [r for r in (self.source.fps, self.max_fps) if r]
        if not rates:
            return next_due
        period = 1.0 / min(rates)
        delay = next_due - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
        return max(next_due, time.monotonic() - period) + period

    def _run(self, failed: str | None = None) -> None:
        backoff = self.retry_initial_s
        if failed is not None:
            backoff = self._recover(failed, backoff)
        next_due = time.monotonic()
        while not self._stop.is_set():
            next_due = self._pace(next_due)
            try:
                frame = self.source.read()
            except CaptureError as e:
                backoff = self._recover(str(e), backoff)
                continue
            except Exception as e:  # a driver bug must not kill the thread silently
                log.exception("unexpected capture failure")
                backoff = self._recover(f"{type(e).__name__}: {e}", backoff)
                continue
            if frame is None:
                with self._cond:
                    self.state = "ended"
                    self._cond.notify_all()
                log.info("%s: end of stream", self.source.describe())
                return
            with self._cond:
                if self._slot is not None:
                    self.frames_dropped += 1
                self._slot = frame
                self.frames_read += 1
                self.last_read = time.monotonic()
                if self.state != "ok":
                    log.info("%s: frames flowing again", self.source.describe())
                self.state = "ok"
                self._cond.notify()
            backoff = self.retry_initial_s
        self._safe_close()

    def _recover(self, why: str, backoff: float) -> float:
        """Close, wait, reopen; returns the next backoff. Every try waits the backoff
        first (at most retry_max_s), so a camera that cannot be reopened costs one open()
        per backoff, never a busy loop."""
        state: CameraState = "lost" if backoff >= self.retry_max_s else "retrying"
        # A camera that opens but fails every read repeats itself: warn once per cause.
        level = logging.DEBUG if (why, state) == (self.last_error, self.state) else \
            logging.WARNING
        self.last_error, self.state = why, state
        log.log(level, "camera %s: %s; reopening in %.1f s (%s)",
                self.source.describe(), why, backoff, self.state)
        self._safe_close()
        while not self._stop.wait(backoff):
            backoff = min(backoff * 2, self.retry_max_s)
            try:
                self.reopens += 1
                self.source.open()
                # Keep the grown backoff: a camera that opens but never delivers must
                # still reach "lost"; a delivered frame resets it in _run.
                return backoff
            except CaptureError as e:
                state = "lost" if backoff >= self.retry_max_s else "retrying"
                # The same failure again is not news: one warning per cause and state.
                level = (logging.DEBUG if (str(e), state) == (self.last_error, self.state)
                         else logging.WARNING)
                self.last_error, self.state = str(e), state
                log.log(level, "camera %s: reopen failed: %s; next try in %.1f s (%s)",
                        self.source.describe(), e, backoff, self.state)
        return backoff

    def _safe_close(self) -> None:
        try:
            self.source.close()
        except Exception as e:
            log.debug("closing %s: %s", self.source.describe(), e)
