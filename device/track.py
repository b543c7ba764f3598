"""Track stage: count people, not frames.

Faces are associated across frames by IoU, with a centroid fallback for fast or zooming
faces whose boxes stop overlapping. Pure: timestamps, boxes and moods in; finished
tracks out. No clock, no I/O.

The mood of a track (the confidence-weighted vote):
  Every observation whose classification is a manifest label adds its confidence to that
  label's weight; "unknown" observations (below the model's min_confidence) abstain. The
  track takes the label with the largest weight when that weight is at least
  `vote_share` (default 0.5) of all labelled weight and strictly more than the
  runner-up's. Otherwise, or when no observation was labelled at all, it is "unknown".
  So a person seen happy in 12 frames and sad in 3 is one happy viewer; a person who is
  half happy, half sad is one unknown viewer rather than a coin toss.

A track counts only after min_hits detections (detector flicker never becomes a viewer)
and ends max_age_s after it was last seen; its dwell time is first to last sighting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from device.classify import Mood
from device.manifest import UNKNOWN


@dataclass(frozen=True, slots=True)
class FinishedTrack:
    track_id: int
    start: float  # first seen
    end: float  # last seen
    hits: int
    label: str
    confidence: float  # mean confidence of the observations that voted for label
    weights: dict[str, float]

    @property
    def dwell_s(self) -> float:
        return self.end - self.start


@dataclass
class _Track:
    track_id: int
    first: float
    last: float
    box: np.ndarray  # float (4,) x, y, w, h
    hits: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    unknown_conf: float = 0.0
    unknown_n: int = 0

    def observe(self, ts: float, box: np.ndarray, mood: Mood | None) -> None:
        self.last = ts
        self.box = box
        self.hits += 1
        if mood is None:
            return
        if mood.label == UNKNOWN:
            self.unknown_conf += mood.confidence
            self.unknown_n += 1
        else:
            self.weights[mood.label] = self.weights.get(mood.label, 0.0) + mood.confidence
            self.counts[mood.label] = self.counts.get(mood.label, 0) + 1


def vote(weights: dict[str, float], vote_share: float) -> str:
    """The track label from per-label confidence sums (see the module docstring)."""
    total = sum(weights.values())
    if total <= 0:
        return UNKNOWN
    ranked = sorted(weights.items(), key=lambda kv: kv[1], reverse=True)
    best, w = ranked[0]
    runner = ranked[1][1] if len(ranked) > 1 else 0.0
    if w / total >= vote_share and w > runner:
        return best
    return UNKNOWN


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), both x, y, w, h."""
    ax0, ay0 = a[:, 0:1], a[:, 1:2]
    ax1, ay1 = ax0 + a[:, 2:3], ay0 + a[:, 3:4]
    bx0, by0 = b[:, 0], b[:, 1]
    bx1, by1 = bx0 + b[:, 2], by0 + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_distance: float = 0.6,
                 min_hits: int = 3, max_age_s: float = 1.5, vote_share: float = 0.5) -> None:
        """max_distance: centroid fallback radius as a fraction of the larger box side."""
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance
        self.min_hits = min_hits
        self.max_age_s = max_age_s
        self.vote_share = vote_share
        self._tracks: list[_Track] = []
        self._next_id = 1
        self.discarded = 0  # tracks that ended below min_hits (flicker)

    @property
    def active(self) -> int:
        """Confirmed people currently in view (or lost for less than max_age_s)."""
        return sum(1 for t in self._tracks if t.hits >= self.min_hits)

    def update(self, ts: float, boxes: np.ndarray | Sequence[Sequence[float]],
               moods: Sequence[Mood | None] = ()) -> tuple[list[int], list[FinishedTrack]]:
        """Feed one frame. Returns the track id of each box and the tracks that ended."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        if moods and len(moods) != len(b):
            raise ValueError(f"{len(b)} boxes but {len(moods)} moods")
        finished = self._expire(ts)
        ids = [0] * len(b)
        matched = self._match(b)
        for ti, bi in matched:
            t = self._tracks[ti]
            t.observe(ts, b[bi], moods[bi] if moods else None)
            ids[bi] = t.track_id
        for bi in range(len(b)):
            if ids[bi]:
                continue
            t = _Track(self._next_id, ts, ts, b[bi])
            self._next_id += 1
            t.observe(ts, b[bi], moods[bi] if moods else None)
            self._tracks.append(t)
            ids[bi] = t.track_id
        return ids, finished

    def finish_all(self) -> list[FinishedTrack]:
        """End every open track (shutdown, end of a replay)."""
        done = [self._finish(t) for t in self._tracks if t.hits >= self.min_hits]
        self.discarded += sum(1 for t in self._tracks if t.hits < self.min_hits)
        self._tracks = []
        return done

    def snapshot(self) -> list[FinishedTrack]:
        """The confirmed tracks as if they ended now (for a crash checkpoint)."""
        return [self._finish(t) for t in self._tracks if t.hits >= self.min_hits]

    def _expire(self, ts: float) -> list[FinishedTrack]:
        keep, done = [], []
        for t in self._tracks:
            if ts - t.last <= self.max_age_s:
                keep.append(t)
            elif t.hits >= self.min_hits:
                done.append(self._finish(t))
            else:
                self.discarded += 1
        self._tracks = keep
        return done

    def _finish(self, t: _Track) -> FinishedTrack:
        label = vote(t.weights, self.vote_share)
        if label == UNKNOWN:
            n = sum(t.counts.values()) + t.unknown_n
            conf = (sum(t.weights.values()) + t.unknown_conf) / n if n else 0.0
        else:
            conf = t.weights[label] / t.counts[label]
        return FinishedTrack(t.track_id, t.first, t.last, t.hits, label, conf, dict(t.weights))

    def _match(self, b: np.ndarray) -> list[tuple[int, int]]:
        """Greedy matching: highest IoU first, then nearest centroids for the rest."""
        if not self._tracks or len(b) == 0:
            return []
        tb = np.stack([t.box for t in self._tracks])
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_b: set[int] = set()

        def greedy(cost: np.ndarray, limit: float) -> None:
            """Take (track, box) pairs in ascending cost while cost <= limit."""
            for flat in np.argsort(cost, axis=None):
                ti, bi = divmod(int(flat), len(b))
                if cost[ti, bi] > limit:
                    break
                if ti not in used_t and bi not in used_b:
                    pairs.append((ti, bi))
                    used_t.add(ti)
                    used_b.add(bi)

        greedy(-iou_matrix(tb, b), -self.iou_threshold)
        if len(used_t) == len(tb) or len(used_b) == len(b):
            return pairs
        tc = tb[:, :2] + tb[:, 2:] / 2
        bc = b[:, :2] + b[:, 2:] / 2
        dist = np.linalg.norm(tc[:, None, :] - bc[None, :, :], axis=2)
        side = np.maximum(tb[:, 2:].max(axis=1)[:, None], b[:, 2:].max(axis=1)[None, :])
        greedy(dist / np.maximum(side, 1e-9), self.max_distance)
        return pairs
        tc = tb[:, :2] + tb[:, 2:] / 2
        bc = b[:, :2] + b[:, 2:] / 2
        dist = np.linalg.norm(tc[:, None, :] - bc[None, :, :], axis=2)
        side = np.maximum(tb[:, 2:].max(axis=1)[:, None], b[:, 2:].max(axis=1)[None, :])
        rel = dist / np.maximum(side, 1e-9)
        for flat in np.argsort(rel, axis=None):
            ti, bi = divmod(int(flat), len(b))
            if rel[ti, bi] > self.max_distance:
                break
            if ti in used_t or bi in used_b:
                continue
            pairs.append((ti, bi))
            used_t.add(ti)
            used_b.add(bi)
        return pairs
