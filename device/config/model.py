"""The pydantic model of moodcam's one TOML config file.

Every field has a default and a description (the example config and `check-config`
are generated from and checked against these), except `device_id`. Models are strict:
TOML already carries types, so `port = "1883"` is a mistake worth reporting rather
than guessing at. Unknown keys are rejected everywhere so a typo never silently
falls back to a default. The vision sections live in `vision.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from device.config.base import STATE_DIR, PathField, Section, _not_below
from device.config.vision import CameraConfig, DetectorConfig, ModelConfig, TrackerConfig
from device.topics import MAX_CONTENT_ID, device_id_problem, topic_problem

__all__ = ["STATE_DIR", "CameraConfig", "DetectorConfig", "ModelConfig", "TrackerConfig"]


class AggregateConfig(Section):
    window_s: int = Field(
        60, ge=1, le=86400,
        description=(
            "Window length in seconds, aligned to the wall clock (UTC). Must divide 3600 "
            "or be a multiple of 60."
        ),
    )

    @field_validator("window_s")
    @classmethod
    def _aligned(cls, v: int) -> int:
        if 3600 % v and v % 60:
            raise ValueError(
                "must divide 3600 (e.g. 10, 30, 60, 300, 900) or be a multiple of 60 "
                "so windows align to the clock"
            )
        return v


def _topic_ok(v: str) -> str:
    problem = topic_problem(v)
    if problem:
        raise ValueError(problem)
    return v


class CampaignConfig(Section):
    topic: str = Field(
        "",
        description=(
            "MQTT topic where the signage player publishes the content id it shows "
            "(e.g. 'signage/screen-1/now_playing'); empty disables campaign attribution."
        ),
    )
    default_content_id: str | None = Field(
        None, min_length=1, max_length=MAX_CONTENT_ID,
        description="Content id for windows while nothing was announced. Unset: null.",
    )
    min_segment_s: float = Field(
        5.0, ge=1, le=3600,
        description=(
            "Shortest time in seconds a content id holds before the next switch: faster "
            "announcements are coalesced and the latest takes effect once the segment has "
            "lasted this long (a flood on the topic cannot multiply windows)."
        ),
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return v if v == "" else _topic_ok(v)


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect to the broker over TLS.")
    ca_file: PathField | None = Field(
        None, description="CA certificate(s) (PEM) to verify the broker. Unset: system CAs."
    )
    cert_file: PathField | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs key_file."
    )
    key_file: PathField | None = Field(
        None, description="Private key (PEM) of the client certificate."
    )
    insecure: bool = Field(
        False,
        description="Skip the broker host-name check (certificate still verified). Tests only.",
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.cert_file is not None and self.key_file is None:
            raise ValueError("key_file: required when cert_file is set (the client key, PEM)")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("cert_file: required when key_file is set (the client cert, PEM)")
        return self


class HomeAssistantConfig(Section):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery messages.")
    discovery_prefix: str = Field(
        "homeassistant", description="Home Assistant's discovery topic prefix."
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _topic_ok(v)


class MqttConfig(Section):
    enabled: bool = Field(True, description="Publish to an MQTT broker (windows spool either way).")
    host: str = Field("localhost", min_length=1, description="Broker host name or IP address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual for TLS).")
    topic_prefix: str = Field(
        "moodcam", description="First topic level(s); topics are <topic_prefix>/<device_id>/..."
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="MQTT client id. Unset: 'moodcam-<device_id>-<6 random hex>'.",
    )
    keepalive_s: int = Field(
        30, ge=5, le=65535, description="Keep-alive in seconds; the broker sends the last will "
        "'offline' after 1.5x this without traffic."
    )
    username: str = Field("", description="Broker user name; empty for anonymous.")
    password_file: PathField | None = Field(
        None,
        description=(
            "File holding the broker password. Unset: $CREDENTIALS_DIRECTORY/mqtt_password "
            "(systemd LoadCredential=) if present."
        ),
    )
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    reconnect_min_s: float = Field(
        1, gt=0, le=3600, description="First reconnect delay in seconds (doubles each try)."
    )
    reconnect_max_s: float = Field(
        60, gt=0, le=3600, description="Longest reconnect delay in seconds."
    )
    status_interval_s: float = Field(
        30, ge=1, le=3600, description="Seconds between retained status messages."
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _topic_ok(v)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if v != v.strip() or "/" in v:
            raise ValueError("must be a bare host name or IP address (no spaces, scheme or path)")
        return v

    @model_validator(mode="after")
    def _reconnect_order(self) -> MqttConfig:
        _not_below(self, "reconnect_max_s", "reconnect_min_s")
        return self


class SpoolConfig(Section):
    path: PathField = Field(
        STATE_DIR / "spool.sqlite",
        description="SQLite file holding windows until the broker acknowledges them.",
    )
    max_windows: int = Field(
        100000, ge=1, le=10_000_000,
        description="Most windows kept; beyond it the oldest are dropped and counted.",
    )
    checkpoint_s: float = Field(
        10.0, ge=1.0, le=600.0,
        description="Seconds between checkpoints of the open window (and the viewers on "
                    "screen) into the spool: the most a kill -9 or power cut can lose.",
    )


class ClockConfig(Section):
    trust: Literal["ntp", "file", "always"] = Field(
        "ntp",
        description="When the wall clock counts as synchronised: 'ntp' once sync_file exists "
                    "or the kernel says NTP synchronised it; 'file' only once sync_file "
                    "exists; 'always' for a device with a real-time clock.",
    )
    sync_file: PathField = Field(
        Path("/run/systemd/timesync/synchronized"),
        description="File whose existence means the clock is synchronised "
                    "(systemd-timesyncd creates this one).",
    )
    step_tolerance_s: float = Field(
        2.0, gt=0, le=3600,
        description="A wall-clock change larger than this (either way) is a step: the "
                    "current window ends and a new one starts at the new time.",
    )
    hold_unsynced_s: float = Field(
        3600.0, ge=0, le=30 * 86400,
        description="Windows counted while the clock is unsynchronised wait this long for "
                    "a sync (then they are restamped); after it they are published "
                    "flagged clock 'unsynced'.",
    )


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO",
        description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL (logs go to stderr).",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        if isinstance(v, str) and v.upper() in _LEVELS:
            return v.upper()
        if isinstance(v, str):
            raise ValueError("must be one of " + ", ".join(_LEVELS))
        return v


class Config(Section):
    device_id: str = Field(
        description="This device's id, one MQTT topic level: letters, digits, '_', '.', '-'."
    )
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Frame source.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Face detector.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Mood model.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="Viewer tracker.")
    aggregate: AggregateConfig = Field(
        default_factory=AggregateConfig, description="Time windows."
    )
    campaign: CampaignConfig = Field(
        default_factory=CampaignConfig, description="Campaign (content) attribution."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker connection.")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="Window spool.")
    clock: ClockConfig = Field(default_factory=ClockConfig, description="Wall clock trust.")
    log: LogConfig = Field(default_factory=LogConfig, description="Logging.")

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        problem = device_id_problem(v)
        if problem:
            raise ValueError(problem)
        return v
