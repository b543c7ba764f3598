"""Schema-valid mood and status payloads as the pipeline produces them (for MQTT tests)."""

from __future__ import annotations

from typing import Any

LABELS = ["happy", "sad", "neutral"]
SHA = "ab" * 32
STREAM = "0123456789abcdef"


def numbered(payload: dict[str, Any], seq: int, stream: str = STREAM) -> dict[str, Any]:
    """The payload with its identity: seq, stream and window_id."""
    return {**payload, "seq": seq, "stream": stream,
            "window_id": f"{payload['device_id']}/{stream}/{seq}"}


def mood(device_id: str = "shop-12", minute: int = 0, content_id: str | None = "promo-42",
         happy: int = 2, seq: int | None = None) -> dict[str, Any]:
    """A window; without seq it lacks "seq", "stream" and "window_id" (the publisher's
    submit_window numbers it from the spool)."""
    labels = [*LABELS, "unknown"]
    viewers = {"happy": happy, "sad": 0, "neutral": 1, "unknown": 0}
    detections = {"happy": 40, "sad": 3, "neutral": 10, "unknown": 0}
    start = f"2026-11-24T07:{minute:02d}:00Z"
    end = f"2026-11-24T07:{minute:02d}:59.500Z"
    n = sum(viewers.values())
    payload = {
        "schema": "moodcam/mood/2",
        "device_id": device_id,
        "start": start,
        "end": end,
        "content_id": content_id,
        "model": {"name": "moodcam-fer", "version": "2026.11.24", "sha256": SHA},
        "labels": labels,
        "viewers": viewers,
        "viewers_total": n,
        "detections": detections,
        "detections_total": sum(detections.values()),
        "mean_confidence": {"happy": 0.81, "sad": 0.6, "neutral": 0.7, "unknown": None},
        "dwell_s": ({"count": n, "mean": 12.5, "median": 10.0, "max": 20.1, "total": 12.5 * n}
                    if n else {"count": 0, "mean": None, "median": None, "max": None,
                               "total": None}),
        "frames": 595,
        "fps": 9.92,
        "clock": "synced",
        "recovered": False,
    }
    return payload if seq is None else numbered(payload, seq)


def status(device_id: str = "shop-12", state: str = "running",
           labels: list[str] | None = None) -> dict[str, Any]:
    return {
        "schema": "moodcam/status/2",
        "device_id": device_id,
        "version": "0.1.0",
        "state": state,
        "started_at": "2026-11-24T06:58:00Z",
        "uptime_s": 120.5,
        "model": {"name": "moodcam-fer", "version": "2026.11.24", "sha256": SHA,
                  "runtime": "ai-edge-litert", "labels": labels or list(LABELS)},
        "detector": "yunet",
        "camera": {"source": "sample", "state": "ok", "frames": 1200, "last_frame_age_s": 0.1},
        "fps": 9.9,
        "spool": {"depth": 0, "dropped": 0, "rejected": 0, "held": 0},
        "mqtt": {"connected": True},
        "content_id": "promo-42",
        "last_window_id": f"shop-12/{STREAM}/17",
        "clock": {"synchronized": True, "source": "timesyncd"},
        "faults": {},
    }
