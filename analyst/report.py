"""moodcam-report's numbers: per campaign, device and hour, and the campaign comparison.

`build(engine, ...)` runs the GROUP BY queries (analyst/report_query.py) and folds their
cells into a `Report`; the text, CSV and HTML writers only format it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.sql import FromClause

from analyst import report_query as rq
from analyst.plays import Play, attributed
from analyst.plays import load as load_plays
from analyst.stats import (
    Association,
    Difference,
    MHSum,
    Share,
    chi_square,
    cmh_chunks,
    describe_difference,
)

UNKNOWN = "unknown"  # the device's label for faces below the confidence threshold
NO_CONTENT = "(none)"  # windows without a content id
MOOD_ORDER = ("happy", "sad", "neutral")


@dataclass
class Group:
    """Totals for one campaign, device or hour of day."""

    key: str
    windows: int = 0
    shown_s: float = 0.0
    viewers: int = 0
    dwell_total: float = 0.0
    dwell_count: int = 0
    dead_windows: int = 0
    labels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dwell_hist: dict[float, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, c: rq.Cell) -> None:
        self.windows += c.windows
        self.shown_s += c.shown_s
        self.viewers += c.viewers
        self.dwell_total += c.dwell_total
        self.dwell_count += c.dwell_count
        self.dead_windows += c.dead_windows

    @property
    def classified(self) -> int:
        return sum(n for lab, n in self.labels.items() if lab != UNKNOWN)

    def share(self, mood: str) -> Share:
        return Share(self.labels.get(mood, 0), self.classified)

    @property
    def viewers_per_hour(self) -> float | None:
        return self.viewers / (self.shown_s / 3600) if self.shown_s > 0 else None

    @property
    def dwell_mean(self) -> float | None:
        return self.dwell_total / self.dwell_count if self.dwell_count else None

    @property
    def dwell_median(self) -> float | None:
        """The viewer-weighted median of the windows' median dwell (see report_query)."""
        total = sum(self.dwell_hist.values())
        if not total:
            return None
        seen = 0
        for start in sorted(self.dwell_hist):
            seen += self.dwell_hist[start]
            if 2 * seen >= total:
                return start + rq.DWELL_BIN_S / 2
        return None  # unreachable: the loop ends at total


@dataclass
class Comparison:
    moods: list[str]
    campaigns: list[str]
    pooled: Association | None  # chi-square on the campaign x mood table
    stratified: Association | None  # CMH over (device, hour) strata
    strata: int  # device-hours where two or more campaigns had classified viewers
    shared_viewers: int  # classified viewers in those device-hours
    pairs: list[tuple[str, str, str, Difference | None, str]]  # a, b, mood, diff, sentence


@dataclass
class Quality:
    windows: int = 0
    missing: int = 0  # seq gaps within streams
    streams: int = 0
    unsynced: int = 0
    recovered: int = 0
    dead: int = 0
    rejects: int = 0


@dataclass
class Report:
    generated: datetime
    tz: str
    first: datetime | None
    last: datetime | None
    moods: list[str]
    campaigns: list[Group]
    devices: list[Group]
    hours: list[Group]  # hour of day in `tz`, 0..23 (only hours with windows)
    timeline: dict[str, dict[int, int]]  # campaign -> {bucket: viewers}, see timeline_step_s
    timeline_step_s: int
    comparison: Comparison
    quality: Quality
    device_health: list[dict[str, object]]
    min_viewers: int


STEPS_S = (10, 60, 600, 3600, 86400)
MAX_POINTS = 200


def timeline_step(span_s: float) -> int:
    """Seconds per point of "viewers over time": the finest of 10 s, 1 min, 10 min, 1 h
    and 1 day that keeps a span to at most 200 points (a year: days)."""
    return next((s for s in STEPS_S if span_s / s <= MAX_POINTS), STEPS_S[-1])


def _mood_order(labels: Iterable[str]) -> list[str]:
    found = set(labels) - {UNKNOWN}
    return [m for m in MOOD_ORDER if m in found] + sorted(found - set(MOOD_ORDER))


def _campaign(content_id: str | None) -> str:
    return NO_CONTENT if content_id is None else content_id


def build(engine: Engine, *, filters: rq.Filters | None = None, tz: str = "UTC",
          min_viewers: int = 30, now: Callable[[], datetime] | None = None,
          plays: list[Play] | None = None) -> Report:
    """The report; `plays` (proof-of-play, analyst/plays.py) gives windows without a
    content id the content a player says it played."""
    f = filters or rq.Filters()
    zone = ZoneInfo(tz)
    hour_of_day: dict[int, int] = {}

    def hod(bucket: int) -> int:
        if bucket not in hour_of_day:
            hour_of_day[bucket] = datetime.fromtimestamp(bucket * 3600, zone).hour
        return hour_of_day[bucket]

    by_campaign: dict[str, Group] = {}
    by_device: dict[str, Group] = {}
    by_hour: dict[int, Group] = {}
    timeline: dict[str, dict[int, int]] = defaultdict(dict)
    quality = Quality()
    first_h = last_h = None

    def group(d: dict[Any, Group], key: object, name: str) -> Group:
        if key not in d:
            d[key] = Group(name)
        return d[key]

    # (device, hour) -> campaign -> label -> viewers: the strata of the comparison.
    strata: dict[tuple[str, int], dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int)))
    with engine.connect() as conn:
        src: FromClause = rq.W if plays is None else attributed(load_plays(conn, plays))
        for c in rq.cells(conn, f, src):
            name = _campaign(c.content_id)
            group(by_campaign, name, name).add(c)
            group(by_device, c.device_id, c.device_id).add(c)
            known = c.hour != rq.UNKNOWN_HOUR
            if known:
                group(by_hour, hod(c.hour), f"{hod(c.hour):02d}").add(c)
            quality.windows += c.windows
            quality.unsynced += c.unsynced
            quality.recovered += c.recovered
            quality.dead += c.dead_windows
            if known:
                first_h = c.hour if first_h is None else min(first_h, c.hour)
                last_h = c.hour if last_h is None else max(last_h, c.hour)
        labels: set[str] = set()
        for content_id, device_id, hour, counts in rq.label_cells(conn, f, src):
            name = _campaign(content_id)
            labels.update(counts)
            for label, n in counts.items():
                by_campaign[name].labels[label] += n
                by_device[device_id].labels[label] += n
            if hour == rq.UNKNOWN_HOUR:
                continue
            for label, n in counts.items():
                by_hour[hod(hour)].labels[label] += n
            if content_id is not None:
                cell = strata[(device_id, hour)][name]
                for label, n in counts.items():
                    if label != UNKNOWN:
                        cell[label] += n
        for key, start, n in rq.dwell_bins(conn, f, "content_id", src):
            by_campaign[_campaign(key)].dwell_hist[start] += n
        for key, start, n in rq.dwell_bins(conn, f, "device_id", src):
            by_device[key].dwell_hist[start] += n
        for key, start, n in rq.dwell_bins(conn, f, "hour", src):
            if key != rq.UNKNOWN_HOUR:
                by_hour[hod(key)].dwell_hist[start] += n
        lo, hi = rq.span(conn, f, src)
        step = timeline_step(0.0 if lo is None or hi is None else hi - lo)
        for content_id, bucket, n in rq.timeline(conn, f, step, src):
            timeline[_campaign(content_id)][bucket] = n
        spans = rq.streams(conn, f)
        quality.streams = len(spans)
        quality.missing = sum(s.missing for s in spans)
        quality.rejects = rq.rejects_count(conn)
        health = rq.devices(conn)

    moods = _mood_order(labels)
    campaigns = sorted(by_campaign.values(), key=lambda g: (g.key == NO_CONTENT, g.key))
    comparison = compare(campaigns, moods, strata, min_viewers)
    return Report(
        generated=(now or (lambda: datetime.now(UTC)))(), tz=tz,
        first=None if first_h is None else datetime.fromtimestamp(first_h * 3600, UTC),
        last=None if last_h is None else datetime.fromtimestamp((last_h + 1) * 3600, UTC),
        moods=moods, campaigns=campaigns,
        devices=sorted(by_device.values(), key=lambda g: g.key),
        hours=[by_hour[h] for h in sorted(by_hour)],
        timeline=dict(timeline), timeline_step_s=step,
        comparison=comparison, quality=quality, device_health=health,
        min_viewers=min_viewers)


# Strata per numpy chunk in compare(): bounds memory at CHUNK x campaigns x moods floats.
CHUNK = 20000


def compare(campaigns: list[Group], moods: list[str],
            strata: dict[tuple[str, int], dict[str, dict[str, int]]],
            min_viewers: int) -> Comparison:
    """Campaign x mood: the pooled chi-square, the CMH test within (device, hour) strata,
    and each pair's Mantel-Haenszel share difference for every mood."""
    names = [g.key for g in campaigns if g.key != NO_CONTENT and g.classified > 0]
    idx = {n: i for i, n in enumerate(names)}
    if len(names) < 2 or not moods:
        return Comparison(moods, names, None, None, 0, 0, [])
    pooled = np.array([[g.labels.get(m, 0) for m in moods] for g in campaigns
                       if g.key in idx], dtype=float)
    mood_idx = {m: j for j, m in enumerate(moods)}
    pairs_idx = list(itertools.combinations(range(len(names)), 2))
    sums = {(a, b, j): MHSum() for a, b in pairs_idx for j in range(len(moods))}
    shared = {"strata": 0, "viewers": 0}

    def chunks() -> Iterable[np.ndarray]:
        """(S, campaigns, moods) counts of the strata where two or more campaigns had
        classified viewers; also feeds the pairwise sums."""
        cells = list(strata.values())
        for lo in range(0, len(cells), CHUNK):
            t = np.zeros((min(CHUNK, len(cells) - lo), len(names), len(moods)))
            for s, cell in enumerate(cells[lo:lo + CHUNK]):
                for name, labels in cell.items():
                    if name in idx:
                        for label, n in labels.items():
                            t[s, idx[name], mood_idx[label]] = n
            totals = t.sum(axis=2)
            t = t[(totals > 0).sum(axis=1) >= 2]
            if not len(t):
                continue
            totals = t.sum(axis=2)
            shared["strata"] += len(t)
            shared["viewers"] += int(totals.sum())
            for (a, b, j), acc in sums.items():
                acc.add(t[:, a, j], totals[:, a], t[:, b, j], totals[:, b])
            yield t

    stratified = cmh_chunks(chunks())
    totals = {g.key: g.classified for g in campaigns}
    pairs = []
    for a, b in pairs_idx:
        for j, mood in enumerate(moods):
            acc = sums[(a, b, j)]
            d = acc.result()
            pairs.append((names[a], names[b], mood, d,
                          describe_difference(names[a], names[b], mood, d, totals,
                                              min_viewers, (acc.n1, acc.n2))))
    return Comparison(moods, names, chi_square(pooled), stratified, shared["strata"],
                      shared["viewers"], pairs)
