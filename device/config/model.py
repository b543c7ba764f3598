"""The pydantic model of moodcam's one TOML config file.

Every field has a default and a description (the example config and `check-config`
are generated from and checked against these), except `device_id`. Models are strict:
TOML already carries types, so `port = "1883"` is a mistake worth reporting rather
than guessing at. Unknown keys are rejected everywhere so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device.topics import MAX_CONTENT_ID, device_id_problem, topic_problem

# TOML has no path type: accept strings for paths despite strict mode.
PathField = Annotated[Path, Field(strict=False)]

STATE_DIR = Path("/var/lib/moodcam")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _not_below(section: BaseModel, upper: str, lower: str) -> None:
    """A backoff's ceiling below its start is a typo the error should name."""
    hi, lo = getattr(section, upper), getattr(section, lower)
    if hi < lo:
        raise ValueError(f"{upper}: must be >= {lower} ({lo:g}) (got {hi:g})")


class CameraConfig(Section):
    source: str = Field(
        "auto",
        description=(
            "Where frames come from: 'auto' (the Pi camera if picamera2 is importable and a "
            "camera exists, else V4L2 device 0 if it opens, else the built-in sample), "
            "'picamera', 'sample', a V4L2 index such as '0' or node such as '/dev/video0', "
            "an rtsp:// or http(s):// URL, a video file, or an image folder or glob."
        ),
    )
    width: int = Field(640, ge=16, le=4096, description="Requested frame width in pixels.")
    height: int = Field(480, ge=16, le=4096, description="Requested frame height in pixels.")
    max_fps: float = Field(
        10.0, gt=0, le=120, description="Frame-rate cap in frames per second."
    )
    retry_initial_s: float = Field(
        1.0, gt=0, le=3600,
        description=("First delay in seconds before reopening a camera that is absent or lost "
                     "(doubles each try; the daemon keeps running meanwhile)."),
    )
    retry_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest delay in seconds between camera reopen tries."
    )

    @field_validator("source", mode="before")
    @classmethod
    def _index_as_text(cls, v: Any) -> Any:
        # `source = 0` is the natural way to write a camera index in TOML.
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return str(v)
        return v

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty; use \"auto\" to pick a camera automatically")
        return v

    @model_validator(mode="after")
    def _retry_order(self) -> CameraConfig:
        _not_below(self, "retry_max_s", "retry_initial_s")
        return self


class DetectorConfig(Section):
    kind: Literal["auto", "yunet", "haar"] = Field(
        "auto",
        description="Face detector: 'auto' uses YuNet when its model file exists, else Haar.",
    )
    yunet_model: PathField = Field(
        STATE_DIR / "detector" / "face_detection_yunet_2023mar.onnx",
        description="Path of the YuNet ONNX model (face_detection_yunet_2023mar.onnx).",
    )
    score_threshold: float = Field(
        0.7, ge=0, le=1, description="Minimum detector score (0-1) for a face to count."
    )
    nms_threshold: float = Field(
        0.3, ge=0, le=1, description="Non-maximum-suppression IoU threshold (0-1), YuNet only."
    )
    min_face_px: int = Field(
        36, ge=8, le=2048, description="Smallest face side in pixels that is classified."
    )
    max_faces: int = Field(
        30, ge=1, le=1000, description="Most faces classified per frame (largest first)."
    )
    input_width: int = Field(
        640, ge=0, le=4096,
        description=(
            "Width in pixels wider frames are shrunk to for detection (boxes are mapped back "
            "and crops come from the full frame); 0 = always the full frame. Never shrunk so "
            "far that a min_face_px face falls below what YuNet finds."
        ),
    )
    recheck_score: float = Field(
        0.0, ge=0, le=1,
        description=(
            "When frames are shrunk for detection: faces scoring from this up to "
            "score_threshold are re-detected in their region of the full frame, so a face "
            "too small for the shrunk pass is still found. 0 = off."
        ),
    )
    every_n_frames: int = Field(
        5, ge=1, le=30,
        description=(
            "Run the detector on every Nth frame; in between, the tracker carries the boxes. "
            "1 = every frame."
        ),
    )
    scene_change: float = Field(
        12.0, ge=0, le=255,
        description=(
            "Detect at once when a frame's 32x24 gray thumbnail differs from the last "
            "detected frame's by more than this mean absolute difference (0-255)."
        ),
    )
    backend: Literal["onnxruntime", "opencv"] = Field(
        "onnxruntime",
        description=(
            "What runs YuNet: onnxruntime (about half the CPU of OpenCV's DNN module here) "
            "or OpenCV's FaceDetectorYN; both give the same faces."
        ),
    )
    threads: int = Field(
        1, ge=1, le=16,
        description=(
            "Detection threads (onnxruntime's; OpenCV's too, for resizing, process-wide). "
            "1 = least CPU."
        ),
    )


class ModelConfig(Section):
    dir: PathField | None = Field(
        None,
        description=(
            "Directory holding manifest.json and the .tflite model. Unset: "
            "/var/lib/moodcam/models/current if it exists, else the repository's models/."
        ),
    )
    runtime: Literal["auto", "ai-edge-litert", "tflite-runtime"] = Field(
        "auto",
        description=(
            "TFLite interpreter package; 'auto' prefers ai-edge-litert, then tflite-runtime."
        ),
    )
    threads: int = Field(1, ge=1, le=16, description="Interpreter threads.")
    min_confidence: float | None = Field(
        None, ge=0, le=1,
        description=("Below this top probability a face is 'unknown', for every label. Unset: "
                     "the manifest's per-label thresholds."),
    )
    public_key_file: PathField | None = Field(
        None,
        description="Ed25519 public key that model bundles must be signed with. Unset: unchecked.",
    )


class TrackerConfig(Section):
    iou_threshold: float = Field(
        0.3, gt=0, le=1, description="Minimum box overlap (IoU, 0-1) to continue a track."
    )
    max_age_s: float = Field(
        1.5, gt=0, le=60, description="Seconds a track survives without a matching face."
    )
    min_hits: int = Field(
        3, ge=1, le=100,
        description=("Frames a track needs before it counts as a viewer (with "
                     "detector.every_n_frames > 1: detections spanning that many frames)."),
    )
    classify_every: int = Field(
        10, ge=1, le=1000,
        description=(
            "Frames between classifications of a track whose mood is settled (new tracks "
            "are classified at once, unsettled ones at every detection). 1 = every face "
            "of every frame."
        ),
    )
    settle_after: int = Field(
        3, ge=1, le=100,
        description=(
            "Classifications a track needs before its mood can be settled (settled: the "
            "weighted vote is a label one more contrary classification could not change)."
        ),
    )


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
