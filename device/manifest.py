"""The model manifest: what the device needs to know to run a model correctly.

Training writes it, the bundle carries it, the daemon reads it. Labels, input shape,
quantisation, crop framing and the confidence threshold all come from here, so a new
model with another label set or input size needs no code change on the Pi.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION: Literal[1] = 1
UNKNOWN = "unknown"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    shape: list[int] = Field(description="Tensor shape including the batch dimension.")
    dtype: Literal["int8", "uint8", "float32"] = Field(description="Element type.")
    scale: float = Field(1.0, gt=0, description="Quantisation scale (1.0 for float32).")
    zero_point: int = Field(0, description="Quantisation zero point (0 for float32).")


class Preprocessing(_Strict):
    color: Literal["gray"] = Field("gray", description="Colour conversion before resizing.")
    size: int = Field(gt=8, le=512, description="Square input side in pixels.")
    crop_scale: float = Field(
        1.0, gt=0.5, le=3.0,
        description="Square crop side as a multiple of the detector box's longer side.")
    crop_shift_y: float = Field(
        0.0, ge=-0.5, le=0.5,
        description="Vertical shift of the crop centre as a fraction of the crop side.")
    value_range: Literal["unit"] = Field(
        "unit", description="Float input range before quantisation: 'unit' is [0, 1].")
    align: Literal["none", "eyes"] = Field(
        "none", description="'eyes': rotate each face so its eyes (the detector's landmarks) "
                            "are level, at align_eye_distance apart and align_eye_y from the "
                            "top (device/align.py); faces without landmarks, and 'none', use "
                            "the crop_scale framing.")
    align_eye_distance: float = Field(
        0.4, gt=0.1, le=0.9, description="With align 'eyes': the distance between the eyes "
                                         "as a fraction of the face side.")
    align_eye_y: float = Field(
        0.4, ge=0.1, le=0.9, description="With align 'eyes': the height of the eyes' "
                                         "midpoint as a fraction of the side from the top.")


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(min_length=1, description="Model family name.")
    version: str = Field(min_length=1, description="Model version, unique per family.")
    created: str = Field(description="ISO 8601 creation time.")
    labels: list[str] = Field(min_length=2, description="Output labels in output order.")
    input: TensorSpec
    output: TensorSpec
    output_kind: Literal["logits", "probabilities"] = Field(
        "logits", description="Logits get softmax(z / temperature) on the device.")
    temperature: float = Field(1.0, gt=0, description="Calibrated softmax temperature.")
    min_confidence: float = Field(
        0.55, ge=0.0, le=1.0, description="Below this top probability the face is 'unknown'.")
    label_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-label minimum confidence, overriding min_confidence for that label "
                    "(training picks them on validation so each label's count matches the "
                    "true count); labels not listed use min_confidence.")
    flip_average: bool = Field(
        False, description="Average the logits of the face and its mirror image (two "
                           "invokes per face).")
    zoom_views: list[float] = Field(
        default_factory=lambda: [1.0], min_length=1, max_length=4,
        description="Views of each face whose logits are averaged: 1.0 is the face as "
                    "cropped, 0.9 its central 90% resized back (a tighter framing); each "
                    "view is also mirrored when flip_average. Training picks them on "
                    "validation.")
    preprocessing: Preprocessing
    model_file: str = Field("model.tflite", description="Model file name beside the manifest.")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_bytes: int = Field(gt=0)
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation results.")
    training: dict[str, Any] = Field(default_factory=dict, description="How it was trained.")

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("labels must be unique")
        if UNKNOWN in v:
            raise ValueError(f"'{UNKNOWN}' is reserved for low-confidence faces")
        return v

    @model_validator(mode="after")
    def _thresholds_ok(self) -> Manifest:
        for label, t in self.label_thresholds.items():
            if label not in self.labels:
                raise ValueError(f"label_thresholds names {label!r}, which is not a label")
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"label_thresholds[{label!r}] = {t} is outside [0, 1]")
        for z in self.zoom_views:
            if not 0.6 <= z <= 1.0:
                raise ValueError(f"zoom_views holds {z}, outside [0.6, 1.0]")
        return self

    def thresholds(self) -> list[float]:
        """The minimum confidence of each label, in output order."""
        return [self.label_thresholds.get(lab, self.min_confidence) for lab in self.labels]

    @property
    def size(self) -> int:
        return self.preprocessing.size


class ManifestError(ValueError):
    """A manifest that is missing, malformed or does not match its model."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: Path) -> Manifest:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ManifestError(f"manifest not found: {path}") from e
    except OSError as e:
        raise ManifestError(f"manifest {path} is not readable JSON: {e}") from e
    return parse_manifest(data, str(path))


def parse_manifest(data: bytes, where: str) -> Manifest:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"manifest {where} is not readable JSON: {e}") from e
    try:
        return Manifest.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ManifestError(f"manifest {where}: {loc}: {first['msg']}") from e


def verify_model_file(manifest: Manifest, model_path: Path) -> None:
    """Raise ManifestError unless the file is exactly the model the manifest describes."""
    if not model_path.is_file():
        raise ManifestError(f"model file not found: {model_path}")
    size = model_path.stat().st_size
    if size != manifest.model_bytes:
        raise ManifestError(
            f"model {model_path} has {size} bytes, manifest says {manifest.model_bytes}"
            " (truncated or wrong file)")
    digest = sha256_file(model_path)
    if digest != manifest.model_sha256:
        raise ManifestError(f"model {model_path} sha256 {digest[:12]}… does not match manifest"
                            f" {manifest.model_sha256[:12]}…")


_ALIGN_KEYS = ("align", "align_eye_distance", "align_eye_y")


def write_manifest(manifest: Manifest, path: Path) -> None:
    data = manifest.model_dump(mode="json")
    if manifest.preprocessing.align == "none":
        # Unaligned manifests stay byte-compatible with devices that predate alignment
        # (their strict schema would reject the unknown keys).
        for k in _ALIGN_KEYS:
            data["preprocessing"].pop(k, None)
    path.write_text(json.dumps(data, indent=2) + "\n")


def manifest_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://moodcam.invalid/schemas/manifest.schema.json"
    return schema
