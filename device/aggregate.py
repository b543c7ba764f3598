"""Aggregate stage: per-window, per-campaign counts, as the `mood` payload dicts.

Time: the timestamps fed in are on a monotonic timeline (time.monotonic() for a live
camera, the media timeline for a replay); `offset` (wall minus monotonic, set with
set_clock) only stamps them. A segment is stamped with the offset at its start:
start = mono start + offset, end = start + its monotonic duration, so end > start and
every duration is real. Windows are aligned to multiples of window_s of the wall clock
(07:00-07:01). When the offset jumps by more than `step_tolerance_s` (an NTP step,
either way) the current segment ends at that moment and the next starts at the new
wall time: a clock step never creates more windows than real time passed.

Identity: every segment takes a sequence number from `seq` when it OPENS (the daemon's
spool persists it at once); window_id is "{device_id}/{stream}/{seq}". A segment
dropped unpublished gives its number back through `release`.

Campaign attribution splits a window into segments, one per stretch of content shown;
each segment is its own payload.

What is counted where:
  - frames and face detections go to the segment covering the frame's timestamp;
  - a viewer (finished track) goes to the segment covering the moment it was LAST
    seen, so each person is counted exactly once, in the content they were watching
    when they left. A closed segment is held back for `grace_s` (the tracker's
    max_age_s) before it is emitted, because a track is only known to have ended that
    long after its last sighting.
  - close() ends the current segment at the given time and emits everything held, so
    the tracks closed at shutdown land in the final payload. A final segment that
    started after the last frame and holds nothing is left out.
  - snapshot() gives every held and open segment as it would be published now, with
    the viewers still on screen counted where last seen (the crash checkpoint).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from device.classify import Mood
from device.manifest import UNKNOWN
from device.track import FinishedTrack

SCHEMA = "moodcam/mood/2"
REPLAY_STREAM = "0" * 16  # windows that are never spooled (replay) use this stream
MIN_SPLIT_S = 0.002  # a split never makes a window of zero length


def iso(ts: float) -> str:
    """UTC ISO 8601 with a Z; milliseconds only when the instant has them."""
    ms = round(ts * 1000)
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms % 1000:03d}Z" if ms % 1000 else f"{base}Z"


@dataclass
class _Segment:
    stream: str
    seq: int
    window_start: float  # wall time of the aligned window this segment belongs to
    start: float  # monotonic
    offset: float  # wall minus monotonic, for stamping
    synced: bool
    content_id: str | None
    end: float | None = None  # monotonic
    frames: int = 0
    det: dict[str, int] = field(default_factory=dict)
    conf: dict[str, float] = field(default_factory=dict)
    viewers: dict[str, int] = field(default_factory=dict)
    dwells: list[float] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.frames and not self.dwells

    def boundary(self, window_s: float) -> float:
        """Monotonic time at which this segment's window ends."""
        return self.window_start + window_s - self.offset


class _Counter:
    def __init__(self) -> None:
        self.next = 1

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1

    def release(self, seq: int) -> None:
        if seq == self.next - 1:
            self.next = seq


class Aggregator:
    def __init__(self, device_id: str, labels: Sequence[str], model: dict[str, str],
                 window_s: float = 60.0, grace_s: float = 0.0,
                 content_id: str | None = None, *,
                 stream: str | Callable[[], str] = REPLAY_STREAM,
                 seq: Callable[[], int] | None = None,
                 release: Callable[[int], None] | None = None,
                 offset: float = 0.0, synced: bool = True,
                 step_tolerance_s: float = 2.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.device_id = device_id
        self.labels = [*labels, UNKNOWN]
        self.model = {"name": model["name"], "version": model["version"],
                      "sha256": model["sha256"]}
        self.window_s = float(window_s)
        self.grace_s = float(grace_s)
        self.content_id = content_id
        # A callable: the spool's stream may change under a running daemon (a corrupt
        # spool is replaced); a segment keeps the stream its number was taken from.
        self._stream = stream if callable(stream) else (lambda: stream)
        counter = _Counter()
        self._seq = seq or counter
        self._release = release or (counter.release if seq is None else None)
        self.offset = offset
        self.synced = synced
        self.step_tolerance_s = step_tolerance_s
        self._segs: list[_Segment] = []  # held closed segments, then the current one
        self._last_frame_ts = -math.inf
        # seq -> monotonic (start, end) of emitted windows, for restamping; the caller
        # pops what it uses (bounded).
        self.spans: dict[int, tuple[float, float]] = {}

    # -- time ------------------------------------------------------------------
    def _window_of(self, wall: float) -> float:
        return math.floor(wall / self.window_s) * self.window_s

    def _new(self, start: float, content: str | None, window_start: float | None = None,
             seq: int | None = None, offset: float | None = None) -> _Segment:
        """offset: the wall clock the window_start was aligned on (a window's next part
        keeps its predecessor's, so its end is where that clock put it)."""
        offset = self.offset if offset is None else offset
        if window_start is None:
            window_start = self._window_of(start + offset)
        number = self._seq() if seq is None else seq
        seg = _Segment(self._stream(), number, window_start, start, offset,
                       self.synced, content)
        self._segs.append(seg)
        return seg

    def _drop(self, seg: _Segment) -> None:
        if self._release is not None:
            self._release(seg.seq)

    def _open(self) -> _Segment | None:
        return self._segs[-1] if self._segs and self._segs[-1].end is None else None

    def _current(self, ts: float) -> _Segment:
        """The open segment covering ts, closing windows that ended before it."""
        cur = self._open()
        if cur is None:
            return self._new(ts, self.content_id)
        while ts >= cur.boundary(self.window_s):
            boundary = cur.boundary(self.window_s)
            cur.end = boundary
            cur = self._new(boundary, cur.content_id, cur.window_start + self.window_s,
                            offset=cur.offset)
        return cur

    def set_clock(self, ts: float, offset: float, synced: bool) -> list[dict[str, Any]]:
        """The wall clock now reads ts + offset; a jump beyond step_tolerance_s ends the
        current segment at ts and starts the next at the new wall time."""
        self.synced = synced
        if abs(offset - self.offset) <= self.step_tolerance_s:
            return self._ready(ts)
        cur = self._open()
        if cur is None:
            self.offset = offset
            return self._ready(ts)
        # Windows that ended before ts close on the clock they were aligned on.
        cur = self._current(ts)
        self.offset = offset
        split = max(ts, self._last_frame_ts)
        if split <= cur.start and cur.empty():
            self._segs.pop()  # nothing counted yet: restamp it, keeping its number
            self._new(cur.start, cur.content_id, seq=cur.seq)
            self._segs[-1].stream = cur.stream
            return self._ready(ts)
        cur.end = max(split, cur.start + MIN_SPLIT_S)
        self._new(cur.end, cur.content_id)
        return self._ready(ts)

    def _ready(self, ts: float, everything: bool = False) -> list[dict[str, Any]]:
        out = []
        while self._segs and self._segs[0].end is not None and (
                everything or ts >= self._segs[0].end + self.grace_s):
            seg = self._segs.pop(0)
            assert seg.end is not None
            if seg.end > seg.start:
                out.append(self._payload(seg))
            else:
                self._drop(seg)
        return out

    # -- inputs ----------------------------------------------------------------
    def add_frame(self, ts: float, moods: Iterable[Mood]) -> list[dict[str, Any]]:
        """One processed frame and the moods of its faces; returns finished payloads."""
        seg = self._current(ts)
        seg.frames += 1
        self._last_frame_ts = max(self._last_frame_ts, ts)
        for m in moods:
            seg.det[m.label] = seg.det.get(m.label, 0) + 1
            seg.conf[m.label] = seg.conf.get(m.label, 0.0) + m.confidence
        return self._ready(ts)

    def add_tracks(self, tracks: Iterable[FinishedTrack]) -> None:
        for t in tracks:
            self._count(self._segment_at(t.end), t)

    @staticmethod
    def _count(seg: _Segment, t: FinishedTrack) -> None:
        seg.viewers[t.label] = seg.viewers.get(t.label, 0) + 1
        seg.dwells.append(t.dwell_s)

    def _segment_at(self, ts: float) -> _Segment:
        for seg in self._segs:
            if seg.end is None or ts < seg.end:
                return seg  # earlier than any held segment: the oldest one still open
        return self._current(ts)

    def begin(self, ts: float) -> None:
        """Open the first window at ts without a frame, so a daemon whose camera is
        absent from the start still closes windows (with frames: 0)."""
        if self._open() is None:
            self._current(ts)

    def poll(self, ts: float) -> list[dict[str, Any]]:
        """Advance time without a frame (camera down, idle loop)."""
        if self._segs:
            self._current(ts)
        return self._ready(ts)

    def set_content(self, content_id: str | None, ts: float) -> list[dict[str, Any]]:
        """The signage now shows content_id (None: nothing known) from ts on."""
        if content_id == self.content_id:
            return []
        self.content_id = content_id
        if self._open() is None:
            return []
        # The announcement's clock may lag the frames' (the camera's timestamps): a
        # switch never reaches back before a counted frame.
        ts = max(ts, self._last_frame_ts)
        cur = self._current(ts)
        if ts <= cur.start and cur.empty():
            # Nothing happened under the old content yet: relabel rather than emit a
            # zero-length segment (keeping its number).
            cur.content_id = content_id
            return []
        cur.end = max(ts, cur.start + MIN_SPLIT_S)
        self._new(cur.end, content_id, cur.window_start, offset=cur.offset)
        return self._ready(ts)

    def close(self, ts: float) -> list[dict[str, Any]]:
        """Shutdown or end of a replay: end the current segment at ts, emit everything."""
        if self._open() is not None:
            cur = self._current(ts)
            cur.end = max(ts, cur.start)
            if cur.empty() and len(self._segs) > 1:
                # A sliver of a new window that began after the last frame: the run did
                # not cover it, so it is not reported as a window that saw nobody.
                self._segs.pop()
                self._drop(cur)
        return self._ready(ts, everything=True)

    def snapshot(self, ts: float, active: Iterable[FinishedTrack]
                 ) -> list[tuple[dict[str, Any], tuple[float, float], bool]]:
        """Every held and open segment as it would be published if the daemon died now
        (the open one ending at ts, the viewers on screen counted where last seen), as
        (payload with recovered: true, monotonic span, synced at start)."""
        segs = [copy.deepcopy(s) for s in self._segs]
        if not segs:
            return []
        if segs[-1].end is None:
            segs[-1].end = max(ts, segs[-1].start + MIN_SPLIT_S)
        for t in active:
            seg = next((s for s in segs if s.end is not None and t.end < s.end), segs[-1])
            self._count(seg, t)
        out = []
        for seg in segs:
            assert seg.end is not None
            if seg.end > seg.start:
                p = self._payload(seg, record=False)
                p["recovered"] = True
                out.append((p, (seg.start, seg.end), seg.synced))
        return out

    # -- output ----------------------------------------------------------------
    def _payload(self, seg: _Segment, record: bool = True) -> dict[str, Any]:
        assert seg.end is not None
        viewers = {lb: seg.viewers.get(lb, 0) for lb in self.labels}
        det = {lb: seg.det.get(lb, 0) for lb in self.labels}
        conf = {lb: (round(seg.conf[lb] / det[lb], 4) if det[lb] else None)
                for lb in self.labels}
        d = seg.dwells
        dwell: dict[str, Any] = {
            "count": len(d),
            "mean": round(statistics.fmean(d), 3) if d else None,
            "median": round(statistics.median(d), 3) if d else None,
            "max": round(max(d), 3) if d else None,
            "total": round(sum(d), 3),
        }
        duration = seg.end - seg.start
        if record:
            if len(self.spans) > 10_000:
                self.spans.clear()  # nobody pops them (replay): stay bounded
            self.spans[seg.seq] = (seg.start, seg.end)
        return {
            "schema": SCHEMA,
            "device_id": self.device_id,
            "window_id": f"{self.device_id}/{seg.stream}/{seg.seq}",
            "seq": seg.seq,
            "stream": seg.stream,
            "start": iso(seg.start + seg.offset),
            "end": iso(seg.end + seg.offset),
            "content_id": seg.content_id,
            "model": dict(self.model),
            "labels": list(self.labels),
            "viewers": viewers,
            "viewers_total": sum(viewers.values()),
            "detections": det,
            "detections_total": sum(det.values()),
            "mean_confidence": conf,
            "dwell_s": dwell,
            "frames": seg.frames,
            "fps": round(seg.frames / duration, 2) if duration > 0 else 0.0,
            "clock": "synced" if seg.synced else "unsynced",
            "recovered": False,
        }
