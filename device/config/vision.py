"""The vision sections of the config: camera, detector, mood model and tracker."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from device.config.base import STATE_DIR, PathField, Section, _not_below


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
