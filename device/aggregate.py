"""Aggregate stage: per-window, per-campaign counts, as the `mood` payload dicts.

Windows are aligned to multiples of window_s on the timeline the frames carry: the wall
clock for a live camera, the media timeline (plus an optional origin) for a replay, so
a replay gives the same windows every time.

Campaign attribution splits a window into segments, one per stretch of content shown;
each segment is its own payload, with window_id
  "{device_id}/{window start}/{content_id or '-'}"  (+ "#2", "#3", ... when the same
content returns within one window).

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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from device.classify import Mood
from device.manifest import UNKNOWN
from device.track import FinishedTrack

SCHEMA = "moodcam/mood/1"


def iso(ts: float) -> str:
    """UTC ISO 8601 with a Z; milliseconds only when the instant has them."""
    ms = round(ts * 1000)
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms % 1000:03d}Z" if ms % 1000 else f"{base}Z"


@dataclass
class _Segment:
    window_start: float
    start: float
    content_id: str | None
    part: int
    end: float | None = None
    frames: int = 0
    det: dict[str, int] = field(default_factory=dict)
    conf: dict[str, float] = field(default_factory=dict)
    viewers: dict[str, int] = field(default_factory=dict)
    dwells: list[float] = field(default_factory=list)

    def empty(self) -> bool:
        return not self.frames and not self.dwells


class Aggregator:
    def __init__(self, device_id: str, labels: Sequence[str], model: dict[str, str],
                 window_s: float = 60.0, grace_s: float = 0.0,
                 content_id: str | None = None) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.device_id = device_id
        self.labels = [*labels, UNKNOWN]
        self.model = {"name": model["name"], "version": model["version"],
                      "sha256": model["sha256"]}
        self.window_s = float(window_s)
        self.grace_s = float(grace_s)
        self.content_id = content_id
        self._segs: list[_Segment] = []  # held closed segments, then the current one
        self._parts: dict[tuple[float, str | None], int] = {}
        self._last_frame_ts = -math.inf

    # -- time ------------------------------------------------------------------
    def _window_of(self, ts: float) -> float:
        return math.floor(ts / self.window_s) * self.window_s

    def _new(self, window_start: float, start: float, content: str | None) -> _Segment:
        key = (window_start, content)
        part = self._parts.get(key, 0) + 1
        self._parts[key] = part
        seg = _Segment(window_start, start, content, part)
        self._segs.append(seg)
        return seg

    def _current(self, ts: float) -> _Segment:
        """The open segment covering ts, closing windows that ended before it."""
        if not self._segs or self._segs[-1].end is not None:
            return self._new(self._window_of(ts), ts, self.content_id)
        cur = self._segs[-1]
        while ts >= cur.window_start + self.window_s:
            boundary = cur.window_start + self.window_s
            cur.end = boundary
            cur = self._new(boundary, boundary, cur.content_id)
        return cur

    def _ready(self, ts: float, everything: bool = False) -> list[dict[str, Any]]:
        out = []
        while self._segs and self._segs[0].end is not None and (
                everything or ts >= self._segs[0].end + self.grace_s):
            seg = self._segs.pop(0)
            assert seg.end is not None
            if seg.end > seg.start or not seg.empty():
                out.append(self._payload(seg))
            if not any(s.window_start == seg.window_start for s in self._segs):
                self._parts = {k: v for k, v in self._parts.items()
                               if k[0] != seg.window_start}
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
            seg = self._segment_at(t.end)
            seg.viewers[t.label] = seg.viewers.get(t.label, 0) + 1
            seg.dwells.append(t.dwell_s)

    def _segment_at(self, ts: float) -> _Segment:
        for seg in self._segs:
            if seg.end is None or ts < seg.end:
                return seg  # earlier than any held segment: the oldest one still open
        return self._current(ts)

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
        if not self._segs or self._segs[-1].end is not None:
            return []
        # The announcement's clock (the broker thread's wall time) may lag the frames'
        # (the camera's timestamps): a switch never reaches back before a counted frame.
        ts = max(ts, self._last_frame_ts)
        cur = self._current(ts)
        ts = max(ts, cur.start)
        if ts <= cur.start and cur.empty():
            # Nothing happened under the old content yet: relabel rather than emit a
            # zero-length segment (and give its part number back).
            self._parts[(cur.window_start, cur.content_id)] -= 1
            self._segs.pop()
            self._new(cur.window_start, cur.start, content_id)
            return []
        cur.end = ts
        self._new(cur.window_start, ts, content_id)
        return self._ready(ts)

    def close(self, ts: float) -> list[dict[str, Any]]:
        """Shutdown or end of a replay: end the current segment at ts, emit everything."""
        if self._segs and self._segs[-1].end is None:
            cur = self._current(ts)
            cur.end = max(ts, cur.start)
            if cur.empty() and len(self._segs) > 1:
                # A sliver of a new window that began after the last frame: the run did
                # not cover it, so it is not reported as a window that saw nobody.
                self._segs.pop()
        return self._ready(ts, everything=True)

    # -- output ----------------------------------------------------------------
    def _payload(self, seg: _Segment) -> dict[str, Any]:
        assert seg.end is not None
        window_id = f"{self.device_id}/{iso(seg.window_start)}/{seg.content_id or '-'}"
        if seg.part > 1:
            window_id += f"#{seg.part}"
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
        return {
            "schema": SCHEMA,
            "device_id": self.device_id,
            "window_id": window_id,
            "start": iso(seg.start),
            "end": iso(seg.end),
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
        }
