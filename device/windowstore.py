"""Between the pipeline and the spool: the daemon's windows survive spool faults.

- Numbers: a window's seq comes from the spool when it opens. If the spool cannot write
  (a full disk), numbers continue in memory and are recorded as soon as it can again.
- Validation: Spool.put validates every window; an invalid one is kept aside
  (`rejected`), logged in one line, counted, never published, never fatal.
- Faults: a window the spool cannot store (full disk, I/O error) waits in a bounded
  queue in memory and is retried every second; `fault` holds the real cause in one line
  (status faults.spool) until the spool works again.
- Time: a window that began while the wall clock was unsynchronised is held in the spool
  (not published) and restamped from this boot's monotonic clock once it synchronises;
  after clock.hold_unsynced_s, or when it comes from an earlier boot, it is published
  as it is, flagged clock "unsynced".
- Crash: checkpoint() stores the open and held windows every spool.checkpoint_s.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any

from device.aggregate import iso
from device.payloads import PayloadError
from device.spool import Hold, Spool

log = logging.getLogger(__name__)

MAX_UNSPOOLED = 10_000  # windows kept in memory while the spool cannot write (~30 MB)
RETRY_S = 1.0


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:280]


class WindowStore:
    def __init__(self, spool: Spool, boot: str, hold_s: float,
                 now: Callable[[], float], on_stored: Callable[[], None] | None = None
                 ) -> None:
        self.spool = spool
        self.boot = boot
        self.hold_s = hold_s
        self._now = now  # monotonic clock
        self.on_stored = on_stored
        self.fault: str | None = None
        self.lost = 0  # windows dropped from the in-memory queue (spool down too long)
        self._queue: deque[tuple[dict[str, Any], Hold | None]] = deque()
        self._last_seq = spool.next_seq() - 1
        self._unrecorded = False  # numbers handed out the spool has not recorded
        self._last_retry = -1e18
        self._counts = {"depth": 0, "dropped": 0, "held": 0}
        self._to_recover = True  # the last run's checkpoint, until it is spooled

    # -- faults ----------------------------------------------------------------
    def _failed(self, what: str, e: BaseException) -> None:
        cause = one_line(e)  # the status says the cause; the log line also says what
        if cause != self.fault:
            log.error("spool %s: %s: %s; windows wait in memory (%d) and are retried",
                      self.spool.path, what, cause, len(self._queue))
        self.fault = cause

    def _ok(self) -> None:
        if self.fault is not None:
            log.warning("spool %s works again (was: %s)", self.spool.path, self.fault)
        self.fault = None

    # -- numbers ---------------------------------------------------------------
    def allocate(self) -> int:
        try:
            if self._unrecorded:
                self.spool.reserve_through(self._last_seq)
                self._unrecorded = False
            seq = self.spool.allocate()
        except (sqlite3.Error, OSError) as e:
            self._failed("cannot record a window number", e)
            self._unrecorded = True
            seq = self._last_seq + 1
        self._last_seq = seq
        return seq

    def release(self, seq: int) -> None:
        if seq == self._last_seq and not self._unrecorded:
            try:
                self.spool.release(seq)
                self._last_seq = seq - 1
            except (sqlite3.Error, OSError) as e:
                log.debug("seq %d not given back: %s", seq, e)

    # -- windows ---------------------------------------------------------------
    def hold_for(self, payload: dict[str, Any], span: tuple[float, float] | None,
                 synced: bool, offset: float) -> Hold | None:
        """Restamp an unsynced window now if the clock has synchronised since, else a
        Hold for it (None for a synced window)."""
        if payload["clock"] != "unsynced" or span is None:
            return None
        if synced:
            payload.update(start=iso(span[0] + offset), end=iso(span[1] + offset),
                           clock="restamped")
            return None
        return Hold(self.boot, span[0], span[1], self._now())

    def store(self, payload: dict[str, Any], hold: Hold | None) -> bool:
        """Spool a finished window (or queue it while the spool fails). False when it
        was rejected as invalid."""
        if self._queue:
            self._queue.append((payload, hold))
            self._bound()
            self.retry(force=True)
            return True
        return self._put(payload, hold)

    def _put(self, payload: dict[str, Any], hold: Hold | None) -> bool:
        try:
            self.spool.put(payload, hold)
        except PayloadError as e:
            log.error("window %s rejected, kept aside, not published: %s",
                      payload.get("window_id"), one_line(e))
            return False
        except (sqlite3.Error, OSError) as e:
            self._queue.append((payload, hold))
            self._failed("cannot store a window", e)
            return True
        self._ok()
        if self.on_stored is not None:
            self.on_stored()
        return True

    def _bound(self) -> None:
        while len(self._queue) > MAX_UNSPOOLED:
            self._queue.popleft()
            self.lost += 1

    def retry(self, force: bool = False) -> None:
        """Store what waits in memory (at most once a second unless forced)."""
        now = self._now()
        if not self._queue and not self._unrecorded:
            return
        if not force and now - self._last_retry < RETRY_S:
            return
        self._last_retry = now
        try:
            if self.fault is not None:
                self.spool.compact()  # a full disk: the WAL may be what fills it
            if self._unrecorded:
                self.spool.reserve_through(self._last_seq)
                self._unrecorded = False
        except (sqlite3.Error, OSError) as e:
            self._failed("cannot record a window number", e)
            return
        while self._queue:
            payload, hold = self._queue[0]
            try:
                self.spool.put(payload, hold)
            except PayloadError:
                pass  # kept aside by the spool; already logged when it happens
            except (sqlite3.Error, OSError) as e:
                self._failed("cannot store a window", e)
                return
            self._queue.popleft()
        self._ok()
        if self.on_stored is not None:
            self.on_stored()

    @property
    def waiting(self) -> int:
        """Windows in memory waiting for the spool."""
        return len(self._queue)

    # -- checkpoints and held windows -------------------------------------------
    def recover(self) -> list[int]:
        """Spool what the last run left in its checkpoint (it died); on a spool error
        (full disk) it stays there and is tried again before the next checkpoint."""
        try:
            done = self.spool.recover()
        except (sqlite3.Error, OSError) as e:
            self._failed("cannot recover the last checkpoint", e)
            return []
        self._to_recover = False
        if done:
            log.warning("recovered %d window(s) from the last checkpoint of a run that "
                        "died (seq %s)", len(done), ", ".join(map(str, done)))
            if self.on_stored is not None:
                self.on_stored()
        return done

    def checkpoint(self, snapshot: list[tuple[dict[str, Any], tuple[float, float], bool]]
                   ) -> None:
        if self._to_recover:
            self.recover()
            if self._to_recover:
                return  # never overwrite a checkpoint not yet recovered
        rows = [(p, None if synced else Hold(self.boot, span[0], span[1], self._now()))
                for p, span, synced in snapshot]
        try:
            self.spool.checkpoint(rows)
        except (sqlite3.Error, OSError) as e:
            self._failed("cannot write the checkpoint", e)

    def release_held(self, synced: bool, offset: float) -> None:
        try:
            n = self.spool.release_held(self.boot, offset if synced else None,
                                        self._now() - self.hold_s)
        except (sqlite3.Error, OSError) as e:
            self._failed("cannot release held windows", e)
            return
        if n:
            log.info("%d held window(s) released (%s)", n,
                     "restamped" if synced else "clock still unsynchronised")
            if self.on_stored is not None:
                self.on_stored()

    def counts(self) -> dict[str, int]:
        """depth, dropped, held (the last known values if the spool cannot be read)."""
        try:
            self._counts = {"depth": self.spool.depth() + len(self._queue),
                            "dropped": self.spool.dropped() + self.lost,
                            "held": self.spool.held()}
        except (sqlite3.Error, OSError) as e:
            log.debug("spool counts: %s", e)
        return dict(self._counts)
