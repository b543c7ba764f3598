"""Windows written straight into the analyst database's tables (the DB contract), for the
report's tests: exact counts in, exact numbers out, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from analyst import schema

T0 = datetime(2026, 11, 24, 7, tzinfo=UTC).timestamp()
LABELS = ("happy", "sad", "neutral", "unknown")


@dataclass
class Rows:
    windows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)

    def add(self, *, device: str = "shop-1", start: float = T0, seconds: float = 60.0,
            content_id: str | None = "promo-a", viewers: dict[str, int] | None = None,
            dwell: tuple[float, float] = (10.0, 8.0), frames: int | None = None,
            clock: str = "synced", stream: str = "00c0ffee00c0ffee",
            seq: int | None = None) -> None:
        """One window; dwell = (mean, median) of its viewers, total = mean * viewers."""
        key = f"{device}/{stream}"
        seq = seq if seq is not None else self.seqs.get(key, 0) + 1
        self.seqs[key] = seq
        counts = {lab: 0 for lab in LABELS}
        counts.update(viewers or {})
        n = sum(counts.values())
        wid = f"{device}/{stream}/{seq}"
        ts = datetime.fromtimestamp(start, UTC)
        te = datetime.fromtimestamp(start + seconds, UTC)
        nframes = int(seconds * 10) if frames is None else frames
        self.windows.append({
            "window_id": wid, "schema": "moodcam/mood/2", "device_id": device,
            "stream": stream, "seq": seq, "start_ts": ts, "end_ts": te,
            "start_epoch": start, "end_epoch": start + seconds, "duration_s": seconds,
            "content_id": content_id, "clock": clock, "recovered": False,
            "model_name": "moodcam-fer", "model_version": "1", "model_sha256": "5e" * 32,
            "viewers_total": n, "detections_total": 20 * n, "frames": nframes,
            "fps": nframes / seconds, "dwell_count": n,
            "dwell_mean": dwell[0] if n else None, "dwell_median": dwell[1] if n else None,
            "dwell_max": 2 * dwell[0] if n else None, "dwell_total": dwell[0] * n if n else None,
            "raw": json.dumps({"window_id": wid}), "received_at": te,
        })
        self.labels += [{"window_id": wid, "label": lab, "viewers": c, "detections": 20 * c,
                         "mean_confidence": 0.8 if c else None} for lab, c in counts.items()]

    def write(self, engine: Engine) -> None:
        with engine.begin() as conn:
            if self.windows:
                conn.execute(schema.windows.insert(), self.windows)
            if self.labels:
                conn.execute(schema.window_labels.insert(), self.labels)
        self.windows, self.labels = [], []
