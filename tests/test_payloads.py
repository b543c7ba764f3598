"""The JSON Schemas of the published payloads, and the checks JSON Schema cannot express."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from device.payloads import PayloadError, load_schema, validate_mood, validate_status
from tests import mqtt_samples as samples

ROOT = Path(__file__).resolve().parent.parent


def mood(**kw: Any) -> dict[str, Any]:
    return samples.mood(seq=17, **kw)


@pytest.mark.parametrize("name", ["mood", "status"])
def test_schemas_are_valid_versioned_and_documented(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}/2.json")
    assert schema["properties"]["schema"]["const"] == f"moodcam/{name}/2"

    def walk(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, sub in node["properties"].items():
                assert sub.get("description"), f"{where}.{key} lacks a description"
                walk(sub, f"{where}.{key}")

    walk(schema, name)
    # The file shipped in the package is the one in the repo.
    on_disk = json.loads((ROOT / "device" / "schemas" / f"{name}.schema.json").read_text())
    assert on_disk == schema


def test_valid_examples() -> None:
    validate_mood(mood())
    validate_mood(mood(content_id=None, happy=0))  # nobody: null dwell statistics
    validate_status(samples.status())


def test_the_agreed_contract_example() -> None:
    """The example from the pipeline contract, verbatim."""
    validate_mood({
        "schema": "moodcam/mood/2", "device_id": "shop-12",
        "window_id": "shop-12/0123456789abcdef/17", "seq": 17, "stream": "0123456789abcdef",
        "start": "2026-11-24T07:00:00Z", "end": "2026-11-24T07:01:00Z",
        "content_id": "promo-42",
        "model": {"name": "moodcam-fer", "version": "2026.11.24", "sha256": "0" * 64},
        "labels": ["happy", "sad", "neutral", "unknown"],
        "viewers": {"happy": 2, "sad": 0, "neutral": 1, "unknown": 0}, "viewers_total": 3,
        "detections": {"happy": 40, "sad": 3, "neutral": 10, "unknown": 2},
        "detections_total": 55,
        "mean_confidence": {"happy": 0.81, "sad": 0.6, "neutral": 0.7, "unknown": 0.5},
        "dwell_s": {"count": 3, "mean": 12.5, "median": 10.0, "max": 20.1, "total": 37.5},
        "frames": 600, "fps": 9.97, "clock": "synced", "recovered": False,
    })


def _broken(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = obj
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize(("path", "value", "why"), [
    ("schema", "moodcam/mood/1", "schema"),
    ("window_id", "shop-12/0123456789abcdef/18", "window_id"),
    ("window_id", "shop-12/2026-11-24T07:00:00Z/promo-42", "window_id"),
    ("stream", "0123456789ABCDEF", "stream"),
    ("clock", "guessed", "clock"),
    ("recovered", KeyError, "recovered"),
    ("end", "2026-11-24T07:00:00Z", "not after start"),
    ("seq", 0, "seq"),
    ("seq", KeyError, "seq"),
    ("extra", 1, "Additional properties"),
    ("device_id", "a/b", "device_id"),
    ("start", "2026-11-24 07:00:00", "start"),
    ("model.sha256", "xyz", "sha256"),
    ("labels", ["happy", "sad", "neutral"], "labels"),
    ("viewers.happy", -1, "viewers"),
    ("viewers.happy", 1.5, "viewers"),
    ("viewers.angry", 0, "keys"),
    ("viewers_total", 99, "viewers_total"),
    ("detections_total", 1, "detections_total"),
    ("mean_confidence.happy", 1.2, "mean_confidence"),
    ("mean_confidence.happy", None, "null exactly when"),
    ("dwell_s.count", 7, "dwell_s.count"),
    ("dwell_s.mean", None, "dwell_s"),
    ("end", "2026-11-24T06:00:00Z", "not after start"),
    ("fps", -1, "fps"),
])
def test_invalid_moods_are_rejected(path: str, value: Any, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        validate_mood(_broken(mood(), path, value))


@pytest.mark.parametrize(("path", "value"), [
    ("state", "sleeping"), ("detector", "dnn"), ("camera.state", "broken"),
    ("spool.depth", -1), ("mqtt.connected", "yes"), ("model.labels", "happy"),
    ("spool.rejected", KeyError), ("clock.synchronized", "yes"), ("faults.Spool", "x"),
    ("faults.spool", "x" * 301),
    ("uptime_s", KeyError), ("extra", 1), ("camera.extra", 1),
])
def test_invalid_statuses_are_rejected(path: str, value: Any) -> None:
    with pytest.raises(PayloadError):
        validate_status(_broken(samples.status(), path, value))


def test_validate_mood_rejects_non_objects() -> None:
    bad: Any
    for bad in (None, [], "x", 1):
        with pytest.raises(PayloadError):
            validate_mood(bad)
