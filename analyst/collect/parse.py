"""One MQTT message -> one database record (pure: no I/O).

Every message becomes a record; anything that is not a valid, current-version payload becomes
a RejectRecord naming the reason, so nothing is silently dropped and nothing raises.

Validation is the payload contract's (device/schemas via device.payloads). The schema part runs
through a fastjsonschema compilation of the same schema file (20x faster than jsonschema's
interpreter, which alone would cap the collector near 2,300 windows/s on one core) plus
device.payloads' own consistency checks; a payload the fast path refuses is re-checked by
device.payloads.validate_mood, whose message goes into the reject reason.
tests/test_collect_parse.py checks both paths agree on valid and broken payloads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastjsonschema

from analyst.db import (
    AvailabilityRecord,
    Record,
    StatusRecord,
    WindowRecord,
    reject,
)
from device import payloads

MOOD_SCHEMA = payloads.MOOD_SCHEMA
STATUS_SCHEMA = payloads.STATUS_SCHEMA
AVAILABILITY = ("online", "offline", "stopped")


@cache
def _fast(name: str) -> Callable[[Any], Any]:
    # Formats are not asserted: device.payloads (jsonschema without a format checker) does
    # not either; the schema's patterns pin the time format.
    return fastjsonschema.compile(payloads.load_schema(name), formats={"date-time": ".*"})


def check_mood(obj: Any) -> None:
    """Raise PayloadError (a ValueError) unless obj is a valid mood payload: the same verdict
    as device.payloads.validate_mood, faster."""
    try:
        _fast("mood")(obj)
    except fastjsonschema.JsonSchemaException:
        payloads.validate_mood(obj)  # the contract's own words for the reason
        raise payloads.PayloadError("invalid mood payload (schema)") from None
    problems = payloads.mood_consistency_problems(obj)
    if problems:
        raise payloads.PayloadError("invalid mood payload: " + "; ".join(problems))


def split_topic(topic: str, prefix: str) -> tuple[str, str] | None:
    """(device_id, kind) for '<prefix>/<device_id>/<kind>', else None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) != 2 or not parts[0]:
        return None
    return parts[0], parts[1]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _f(x: float | None) -> float | None:
    return None if x is None else float(x)


def window_record(obj: dict[str, Any], raw: str, received_at: datetime,
                  topic: str = "") -> WindowRecord:
    # int()/float(): JSON Schema's "integer" also admits 1.0, and a database column wants
    # one type (PostgreSQL's binary arrays refuse a list mixing ints and floats).
    start, end = _utc(obj["start"]), _utc(obj["end"])
    dwell, model, wid = obj["dwell_s"], obj["model"], obj["window_id"]
    row = {
        "window_id": wid, "schema": obj["schema"], "device_id": obj["device_id"],
        "stream": obj["stream"], "seq": int(obj["seq"]), "start_ts": start, "end_ts": end,
        "start_epoch": start.timestamp(), "end_epoch": end.timestamp(),
        "duration_s": (end - start).total_seconds(), "content_id": obj["content_id"],
        "clock": obj["clock"], "recovered": obj["recovered"], "model_name": model["name"],
        "model_version": model["version"], "model_sha256": model["sha256"],
        "viewers_total": int(obj["viewers_total"]),
        "detections_total": int(obj["detections_total"]), "frames": int(obj["frames"]),
        "fps": float(obj["fps"]), "dwell_count": int(dwell["count"]),
        "dwell_mean": _f(dwell["mean"]), "dwell_median": _f(dwell["median"]),
        "dwell_max": _f(dwell["max"]), "dwell_total": _f(dwell["total"]), "raw": raw,
        "received_at": received_at,
    }
    labels = [{"window_id": wid, "label": lab, "viewers": int(obj["viewers"][lab]),
               "detections": int(obj["detections"][lab]),
               "mean_confidence": _f(obj["mean_confidence"][lab])} for lab in obj["labels"]]
    return WindowRecord(window_id=wid, row=row, labels=labels, topic=topic)


def status_record(obj: dict[str, Any], raw: str, received_at: datetime) -> StatusRecord:
    return StatusRecord(device_id=obj["device_id"], row={
        "device_id": obj["device_id"], "status_raw": raw, "status_at": received_at,
        "state": obj["state"], "camera_state": obj["camera"]["state"],
        "camera_frames": int(obj["camera"]["frames"]), "fps": float(obj["fps"]),
        "spool_depth": int(obj["spool"]["depth"]), "spool_dropped": int(obj["spool"]["dropped"]),
        "model_version": obj["model"]["version"], "software_version": obj["version"],
        "content_id": obj["content_id"], "clock_synchronized": obj["clock"]["synchronized"],
        "faults": json.dumps(obj["faults"], sort_keys=True),
    })


def _json(payload: bytes) -> tuple[Any, str]:
    text = payload.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return json.loads(text), text


def parse(topic: str, payload: bytes, prefix: str, received_at: datetime) -> Record:
    """The record for one message; never raises for any topic or payload."""
    try:
        return _parse(topic, payload, prefix, received_at)
    except Exception as e:  # hostile input must never stop the collector
        return reject(topic, f"{type(e).__name__}: {e}", payload, received_at)


def _parse(topic: str, payload: bytes, prefix: str, received_at: datetime) -> Record:
    where = split_topic(topic, prefix)
    if where is None:
        return reject(topic, f"topic is not {prefix}/<device_id>/<kind>", payload,
                      received_at)
    device_id, kind = where
    if kind == "availability":
        word = payload.decode("utf-8", errors="replace").strip()
        if word not in AVAILABILITY:
            return reject(topic, f"availability {word[:40]!r} is not one of "
                          f"{', '.join(AVAILABILITY)}", payload, received_at)
        return AvailabilityRecord(device_id=device_id, availability=word, at=received_at)
    if kind not in ("mood", "status"):
        return reject(topic, f"unknown topic kind {kind!r}", payload, received_at)
    try:
        obj, text = _json(payload)
    except ValueError as e:
        return reject(topic, f"not UTF-8 JSON: {e}", payload, received_at)
    version = obj.get("schema") if isinstance(obj, dict) else None
    expected = MOOD_SCHEMA if kind == "mood" else STATUS_SCHEMA
    if version != expected:
        return reject(topic, f"unsupported schema {str(version)[:60]!r} on {kind} "
                      f"(this collector stores {expected})", payload, received_at)
    try:
        if kind == "mood":
            check_mood(obj)
        else:
            payloads.validate_status(obj)
    except ValueError as e:
        return reject(topic, str(e), payload, received_at)
    if obj["device_id"] != device_id:
        return reject(topic, f"device_id {obj['device_id']!r} differs from the topic's "
                      f"{device_id!r}", payload, received_at)
    if kind == "mood":
        return window_record(obj, text, received_at, topic)
    return status_record(obj, text, received_at)
