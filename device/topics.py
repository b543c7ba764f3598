"""MQTT topic names and the rules that keep them safe.

Device ids and prefixes end up inside topic names that analysts subscribe to with
wildcards, so a `+`, `#` or an empty level would silently break their subscriptions.
The same checks serve the config loader (as error messages) and the publisher.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# MQTT caps a topic at 65535 bytes; a prefix this long is certainly a mistake.
MAX_PREFIX_BYTES = 200
_HA_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be used as a publish/subscribe topic name, or None if it can."""
    if not topic:
        return "must not be empty"
    if "\0" in topic:
        return "must not contain a NUL character"
    if "+" in topic or "#" in topic:
        return "must not contain the MQTT wildcards '+' or '#'"
    if topic.startswith("/") or topic.endswith("/"):
        return "must not start or end with '/'"
    if "//" in topic:
        return "must not contain empty levels ('//')"
    if any(c.isspace() and c != " " for c in topic):
        return "must not contain tabs or line breaks"
    if len(topic.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"must be at most {MAX_PREFIX_BYTES} bytes long"
    return None


def device_id_problem(device_id: str) -> str | None:
    """Why `device_id` is not a valid single topic level, or None if it is."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        return "must be 1-64 characters from A-Z a-z 0-9 _ . - (one MQTT topic level)"
    return None


@dataclass(frozen=True)
class Topics:
    """The topics one device publishes under `<prefix>/<device_id>/`."""

    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def mood(self) -> str:
        return f"{self.base}/mood"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def ha_sensor_config(self, discovery_prefix: str, object_id: str) -> str:
        # Home Assistant only accepts [A-Za-z0-9_-] in the node/object id level.
        node = _HA_UNSAFE.sub("_", f"{self.device_id}_{object_id}")
        return f"{discovery_prefix}/sensor/{node}/config"


MAX_CONTENT_ID = 256
# Anyone who may publish on the campaign topic reaches this parser: both caps are
# checked before any decoding, so a huge or deeply nested payload costs one length
# check or one linear scan, never a RecursionError inside json.
MAX_NOW_PLAYING_BYTES = 4096
MAX_JSON_DEPTH = 8


def json_depth(text: str) -> int:
    """The deepest nesting of JSON arrays/objects in text (strings skipped), computed
    without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def parse_content_id(payload: bytes | bytearray) -> str | None:
    """The content id in a now-playing message; None for "nothing playing".

    Accepts a plain UTF-8 id (`promo-42`), a JSON string (`"promo-42"`) or a JSON object
    with a string `content_id` (or `id`). An empty payload, JSON null or an empty id
    means nothing is playing. Raises ValueError, saying why, for anything else
    (including a payload over MAX_NOW_PLAYING_BYTES or JSON nested deeper than
    MAX_JSON_DEPTH).
    """
    if len(payload) > MAX_NOW_PLAYING_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes is over the "
                         f"{MAX_NOW_PLAYING_BYTES}-byte limit")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8") from None
    if not text:
        return None
    if text[0] in '{["' or text == "null":
        if json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"payload looks like JSON but is not ({e.msg})") from None
        if isinstance(value, dict):
            key = "content_id" if "content_id" in value else "id"
            if key not in value:
                raise ValueError("JSON object has no 'content_id' (or 'id') key")
            value = value[key]
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"content id must be a string, not {type(value).__name__}")
        text = value.strip()
        if not text:
            return None
    if len(text) > MAX_CONTENT_ID:
        raise ValueError(f"content id longer than {MAX_CONTENT_ID} characters")
    if any(not c.isprintable() for c in text):
        raise ValueError("content id contains control characters")
    return text


def ha_discovery(
    topics: Topics, discovery_prefix: str, labels: list[str], version: str
) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery configs (topic -> payload): viewers per label and total."""
    device = {
        "identifiers": [f"moodcam_{topics.device_id}"],
        "name": f"moodcam {topics.device_id}",
        "manufacturer": "moodcam",
        "model": "moodcam mood sensor",
        "sw_version": version,
    }
    availability = [{
        "topic": topics.availability,
        # "stopped" (clean exit) is as unavailable as the last will's "offline".
        "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
    }]
    sensors: list[tuple[str, str, str]] = [
        (label, f"Viewers {label}",
         "{{ value_json.viewers[%s] | default(0) }}" % json.dumps(label))  # noqa: UP031
        for label in labels
    ]
    sensors.append(("total", "Viewers total", "{{ value_json.viewers_total }}"))
    out = {}
    for key, name, template in sensors:
        out[topics.ha_sensor_config(discovery_prefix, f"viewers_{key}")] = {
            "name": name,
            "unique_id": _HA_UNSAFE.sub("_", f"moodcam_{topics.device_id}_viewers_{key}"),
            "state_topic": topics.mood,
            "value_template": template,
            "unit_of_measurement": "viewers",
            "state_class": "measurement",
            "icon": "mdi:account-group",
            "availability": availability,
            "device": device,
        }
    return out
