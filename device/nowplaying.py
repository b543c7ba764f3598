"""What the screen shows, as the windows see it: now-playing announcements, bounded.

Anyone who can publish on `campaign.topic` decides where windows split. Each switch
closes a segment (one `mood` message, one fsynced spool row), so an unbounded stream of
switches would multiply windows and, at `spool.max_windows`, push real ones out. Here
switches are coalesced: after a switch the content holds for at least
`campaign.min_segment_s`; announcements arriving sooner are remembered (only the
latest) and that one takes effect once the segment has lasted the minimum, unless it
is what already shows. A burst of fast switches or malformed payloads is a fault while
it lasts, logged once when it starts and once when it ends.

Thread-safe: announce()/reject() run on the MQTT thread, poll() on the main loop.
Times are monotonic seconds (durations only); `stamp` values are opaque timestamps
the caller gets back with the switch (the daemon passes the window clock's "now").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A burst is over, and its fault cleared, after this many min_segment_s without trouble.
QUIET_SEGMENTS = 2.0
MIN_QUIET_S = 2.0


@dataclass(frozen=True, slots=True)
class Switch:
    """The content that shows from `stamp` on."""

    content: str | None
    stamp: float


class NowPlaying:
    def __init__(self, default: str | None, min_segment_s: float, topic: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.default = default
        self.min_segment_s = min_segment_s
        self.topic = topic
        self.current: str | None = default  # what the open segment is tagged with
        self._last_switch: float | None = None  # monotonic; None: no switch yet
        self._announced: str | None = None  # latest announcement (None: nothing playing)
        # (id, stamp at arrival or None for "whenever applied", monotonic arrival)
        self._pending: tuple[str | None, float | None, float] | None = None
        # The current burst of trouble.
        self._burst_start: float | None = None
        self._burst_last = 0.0
        self._held = 0
        self._junk = 0
        self._last_junk = ""

    # -- MQTT thread ---------------------------------------------------------------
    def announce(self, content: str | None, stamp: float) -> None:
        """The player says `content` shows now (None: nothing, so the default)."""
        now = self._clock()
        with self._lock:
            effective = self._effective(content)
            # Replacing an announcement the main loop has not applied yet is a switch
            # faster than the minimum too (a burst between two polls).
            replaced = (self._pending is not None
                        and self._effective(self._pending[0]) != effective)
            self._announced = content
            self._pending = (content, stamp, now)
            if replaced or (self._too_soon(now) and (effective != self.current
                                                     or self._held)):
                self._held += 1
                self._trouble(now, f"content switches faster than campaign.min_segment_s "
                                   f"({self.min_segment_s:g} s); the latest takes effect "
                                   "when the current segment has lasted that long")

    def reject(self, reason: str) -> None:
        """A payload on the campaign topic that is not a content id."""
        now = self._clock()
        with self._lock:
            self._junk += 1
            self._last_junk = reason
            self._trouble(now, f"malformed payloads ignored ({reason})")

    # -- main loop -----------------------------------------------------------------
    def poll(self, stamp: float) -> Switch | None:
        """The switch to apply now, if one is due; also ends a burst that went quiet."""
        now = self._clock()
        with self._lock:
            self._end_burst(now)
            if self._pending is None or self._too_soon(now):
                return None
            content, arrived_stamp, arrived = self._pending
            self._pending = None
            effective = self._effective(content)
            if effective == self.current:
                return None
            held = (self._last_switch is not None
                    and arrived - self._last_switch < self.min_segment_s)
            self.current = effective
            self._last_switch = now
            # Not held back: the switch happened when it was announced.
            return Switch(effective, stamp if held or arrived_stamp is None else arrived_stamp)

    def fault(self) -> str | None:
        """One line for status `faults.now_playing` while a burst lasts, else None."""
        with self._lock:
            if self._burst_start is None:
                return None
            parts = []
            if self._held:
                parts.append(f"rate limited: {self._held} content switches coalesced "
                             f"(campaign.min_segment_s = {self.min_segment_s:g})")
            if self._junk:
                parts.append(f"{self._junk} malformed payloads ignored (last: "
                             f"{self._last_junk[:80]})")
            return "; ".join(parts)[:300]

    def reconfigure(self, default: str | None, min_segment_s: float, topic: str) -> None:
        """A reload: a new default applies now if nothing is announced; a new topic
        forgets what the old one said."""
        with self._lock:
            self.default = default
            self.min_segment_s = min_segment_s
            if topic != self.topic:
                self.topic = topic
                self._announced = None
                self._pending = None
            if self._pending is None and self._effective(self._announced) != self.current:
                # Due at once, bypassing the minimum: this is the operator, not a flood.
                self._pending = (self._announced, None, self._clock())
                self._last_switch = None

    # -- internals (lock held) -----------------------------------------------------
    def _effective(self, content: str | None) -> str | None:
        return self.default if content is None else content

    def _too_soon(self, now: float) -> bool:
        return self._last_switch is not None and now - self._last_switch < self.min_segment_s

    def _trouble(self, now: float, what: str) -> None:
        if self._burst_start is None:
            self._burst_start = now
            log.warning("now-playing on %s: %s; status faults.now_playing says so until it "
                        "stops", self.topic or "the campaign topic", what)
        self._burst_last = now

    def _end_burst(self, now: float) -> None:
        if self._burst_start is None:
            return
        if now - self._burst_last < max(MIN_QUIET_S, QUIET_SEGMENTS * self.min_segment_s):
            return
        log.info("now-playing: the burst is over after %.1f s (%d switches coalesced, %d "
                 "malformed payloads ignored)", self._burst_last - self._burst_start,
                 self._held, self._junk)
        self._burst_start = None
        self._held = self._junk = 0
        self._last_junk = ""


__all__ = ["NowPlaying", "Switch"]
