"""Schema-valid mood/2 and status/2 payloads made up from a few numbers: demo data for the
Grafana check, the collector's tests and the benchmark (the daemon makes the real ones)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

LABELS = ["happy", "sad", "neutral", "unknown"]
SHA = "5e" * 32
STREAM = "00c0ffee00c0ffee"


def iso(t: datetime) -> str:
    """RFC 3339 UTC with 'Z', milliseconds only when non-zero (as the daemon writes it)."""
    t = t.astimezone(UTC)
    ms = t.microsecond // 1000
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}Z" if ms else "Z")


def mood(device_id: str = "shop-1", seq: int = 1, *, stream: str = STREAM,
         start: datetime | None = None, seconds: float = 60.0,
         content_id: str | None = "promo-a", viewers: dict[str, int] | None = None,
         frames: int | None = None, clock: str = "synced",
         recovered: bool = False) -> dict[str, Any]:
    """A mood/2 window; by default the seq-th minute after 2026-11-24T07:00Z."""
    if start is None:
        start = datetime(2026, 11, 24, 7, tzinfo=UTC) + timedelta(minutes=seq - 1)
    counts = {lab: 0 for lab in LABELS}
    counts.update(viewers if viewers is not None else {"happy": 2, "neutral": 1})
    n = sum(counts.values())
    detections = {lab: 20 * c for lab, c in counts.items()}
    nframes = int(seconds * 10) if frames is None else frames
    dwell: dict[str, Any] = (
        {"count": n, "mean": 12.5, "median": 10.0, "max": 20.5, "total": 12.5 * n} if n
        else {"count": 0, "mean": None, "median": None, "max": None, "total": None})
    return {
        "schema": "moodcam/mood/2",
        "device_id": device_id,
        "window_id": f"{device_id}/{stream}/{seq}",
        "seq": seq,
        "stream": stream,
        "start": iso(start),
        "end": iso(start + timedelta(seconds=seconds)),
        "content_id": content_id,
        "model": {"name": "moodcam-fer", "version": "2026.11.24", "sha256": SHA},
        "labels": list(LABELS),
        "viewers": counts,
        "viewers_total": n,
        "detections": detections,
        "detections_total": sum(detections.values()),
        "mean_confidence": {lab: (0.8 if d else None) for lab, d in detections.items()},
        "dwell_s": dwell,
        "frames": nframes,
        "fps": round(nframes / seconds, 3),
        "clock": clock,
        "recovered": recovered,
    }


def status(device_id: str = "shop-1", *, state: str = "running", camera: str = "ok",
           fps: float = 9.9, spool_depth: int = 0, model_version: str = "2026.11.24",
           synchronized: bool = True) -> dict[str, Any]:
    """A status/2 payload."""
    return {
        "schema": "moodcam/status/2",
        "device_id": device_id,
        "version": "0.1.0",
        "state": state,
        "started_at": "2026-11-24T06:58:00Z",
        "uptime_s": 120.5,
        "model": {"name": "moodcam-fer", "version": model_version, "sha256": SHA,
                  "runtime": "ai-edge-litert", "labels": ["happy", "sad", "neutral"]},
        "detector": "yunet",
        "camera": {"source": "sample", "state": camera, "frames": 1200,
                   "last_frame_age_s": 0.1},
        "fps": fps,
        "spool": {"depth": spool_depth, "dropped": 0, "rejected": 0, "held": 0},
        "mqtt": {"connected": True},
        "content_id": "promo-a",
        "last_window_id": None,
        "clock": {"synchronized": synchronized, "source": "timesyncd"},
        "faults": {} if camera == "ok" else {"camera": "cannot open /dev/video0"},
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def demo_fleet(start: datetime, hours: int = 6, devices: int = 3) -> list[dict[str, Any]]:
    """A small fleet's windows: each device shows promo-a and promo-b alternately for 10
    minutes each, one window a minute; promo-a draws happier viewers. The last device's
    camera dies halfway (frames 0, no viewers), as a dead camera looks in the data, and
    shop-2 lost windows seq 101-105 (a spool overflow: a gap in seq)."""
    out = []
    for d in range(1, devices + 1):
        for minute in range(hours * 60):
            if d == 2 and 100 <= minute < 105:
                continue
            a = (minute // 10) % 2 == 0
            dead = d == devices and minute >= hours * 30
            mix = {"happy": 3, "sad": 1, "neutral": 1} if a else {"happy": 1, "sad": 2,
                                                                  "neutral": 2}
            if (minute + d) % 4 == 0:
                mix = {**mix, "unknown": 1}
            out.append(mood(f"shop-{d}", minute + 1, start=start + timedelta(minutes=minute),
                            content_id="promo-a" if a else "promo-b",
                            viewers={} if dead else mix, frames=0 if dead else None))
    return out
