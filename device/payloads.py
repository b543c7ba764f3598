"""The published JSON payloads: validation against the versioned JSON Schemas.

The schemas in device/schemas/ are the analysts' contract. JSON Schema cannot say that
every per-label object has exactly the keys in `labels` or that totals add up, so
`validate_mood` checks that too.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

MOOD_SCHEMA = "moodcam/mood/2"
STATUS_SCHEMA = "moodcam/status/2"


class PayloadError(ValueError):
    """A payload that breaks its schema; the message lists every problem."""


def load_schema(name: str) -> dict[str, Any]:
    """A schema by name from the installed package: 'mood' and 'status' are the current
    versions; 'mood-1' and 'status-1' the first ones, kept for reference."""
    text = resources.files("device").joinpath("schemas", f"{name}.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _schema_problems(name: str, obj: Any) -> list[str]:
    errors = sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def _raise(kind: str, problems: list[str]) -> None:
    if problems:
        raise PayloadError(f"invalid {kind} payload: " + "; ".join(problems))


def mood_consistency_problems(obj: dict[str, Any]) -> list[str]:
    """What JSON Schema cannot say about a schema-valid mood payload: per-label keys, totals,
    null rules, end after start, window_id = device/stream/seq. For a validator that checks
    the schema by other means (the analyst's collector compiles it for speed)."""
    problems: list[str] = []
    labels = obj["labels"]
    for key in ("viewers", "detections", "mean_confidence"):
        if set(obj[key]) != set(labels):
            problems.append(f"$.{key}: keys {sorted(obj[key])} differ from labels {labels}")
    for key in ("viewers", "detections"):
        if set(obj[key]) == set(labels) and sum(obj[key].values()) != obj[f"{key}_total"]:
            problems.append(f"$.{key}_total: {obj[f'{key}_total']} is not the sum of {key}")
    for label, n in obj["detections"].items():
        conf = obj["mean_confidence"].get(label, 0)
        if (n == 0) != (conf is None):
            problems.append(
                f"$.mean_confidence.{label}: must be null exactly when detections is 0")
    dwell = obj["dwell_s"]
    if dwell["count"] != obj["viewers_total"]:
        problems.append("$.dwell_s.count: differs from viewers_total")
    if (dwell["count"] == 0) != (dwell["mean"] is None):
        problems.append("$.dwell_s: statistics must be null exactly when count is 0")
    if datetime.fromisoformat(obj["end"]) <= datetime.fromisoformat(obj["start"]):
        problems.append("$.end: not after start")
    expected = f"{obj['device_id']}/{obj['stream']}/{obj['seq']}"
    if obj["window_id"] != expected:
        problems.append(f"$.window_id: {obj['window_id']!r} is not {expected!r}")
    return problems


def validate_mood(obj: Any) -> None:
    """Raise PayloadError unless obj is a valid `mood` payload."""
    problems = _schema_problems("mood", obj)
    if not problems:
        problems = mood_consistency_problems(obj)
    _raise("mood", problems)


def validate_status(obj: Any) -> None:
    """Raise PayloadError unless obj is a valid `status` payload."""
    _raise("status", _schema_problems("status", obj))
