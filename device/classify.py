"""Classify stage: one preprocessed face -> label, confidence and per-label probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.manifest import (
    UNKNOWN,
    Manifest,
    ManifestError,
    load_manifest,
    verify_model_file,
)
from device.preprocess import dequantize, face_views, quantize, softmax
from device.runtime import Interpreter, RuntimeName


@dataclass(frozen=True)
class Mood:
    label: str  # one of the manifest's labels, or "unknown" below min_confidence
    confidence: float  # top probability, whatever the label
    top: str  # the argmax label even when reported as unknown
    probs: tuple[float, ...]


class Classifier:
    """A verified model and its manifest, ready to classify face tensors."""

    def __init__(self, manifest: Manifest, model_path: Path,
                 prefer: RuntimeName | None = None, num_threads: int = 1,
                 min_confidence: float | None = None,
                 flip_average: bool | None = None,
                 zoom_views: Sequence[float] | None = None) -> None:
        """`min_confidence`, when given, replaces the manifest's thresholds for every label;
        `flip_average` and `zoom_views`, when given, the manifest's views (to measure what
        they add)."""
        verify_model_file(manifest, model_path)
        self.manifest = manifest
        self.model_path = model_path
        self.interpreter = Interpreter(model_path, prefer=prefer, num_threads=num_threads)
        self._check_against_manifest()
        self.thresholds = np.array(manifest.thresholds() if min_confidence is None
                                   else [min_confidence] * len(manifest.labels), np.float64)
        self.flip_average = (manifest.flip_average if flip_average is None
                             else flip_average)
        self.zoom_views = tuple(manifest.zoom_views if zoom_views is None else zoom_views)
        self._in_scale, self._in_zp = self.interpreter.input_quant
        self._out_scale, self._out_zp = self.interpreter.output_quant

    @classmethod
    def from_dir(cls, model_dir: Path, **kw: object) -> Classifier:
        """Load `manifest.json` and the model it names from one directory."""
        manifest = load_manifest(model_dir / "manifest.json")
        return cls(manifest, model_dir / manifest.model_file, **kw)  # type: ignore[arg-type]

    @property
    def runtime(self) -> str:
        return self.interpreter.runtime

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def size(self) -> int:
        return self.manifest.preprocessing.size

    def _check_against_manifest(self) -> None:
        m, it = self.manifest, self.interpreter
        problems = []
        if it.input_shape != m.input.shape:
            problems.append(f"input shape {it.input_shape} != manifest {m.input.shape}")
        if it.input_dtype != m.input.dtype:
            problems.append(f"input dtype {it.input_dtype} != manifest {m.input.dtype}")
        if it.output_shape != [1, len(m.labels)]:
            problems.append(f"output shape {it.output_shape} does not fit {len(m.labels)} labels")
        if m.input.shape != [1, m.preprocessing.size, m.preprocessing.size, 1]:
            problems.append(f"input shape {m.input.shape} does not fit preprocessing size "
                            f"{m.preprocessing.size}")
        if m.input.dtype != "float32":
            scale, zp = it.input_quant
            if not np.isclose(scale, m.input.scale) or zp != m.input.zero_point:
                problems.append(f"input quantisation ({scale}, {zp}) != manifest "
                                f"({m.input.scale}, {m.input.zero_point})")
        if problems:
            raise ManifestError(f"model {self.model_path} does not match its manifest: "
                                + "; ".join(problems))

    def quantize_input(self, face: np.ndarray) -> np.ndarray:
        """Float HxWx1 face in [0, 1] -> the model's input tensor."""
        return quantize(face, self._in_scale, self._in_zp, self.interpreter.input_dtype)

    def raw(self, face: np.ndarray) -> np.ndarray:
        """The model's raw output tensor for one float face (golden-sample checks use it)."""
        return self.interpreter.invoke(self.quantize_input(face))

    @property
    def views_per_face(self) -> int:
        """Model invocations per face."""
        return len(self.zoom_views) * (2 if self.flip_average else 1)

    def output(self, face: np.ndarray) -> np.ndarray:
        """Dequantised output for one float face, averaged over the manifest's views: its
        zoomed framings, each with its mirror image when asked (faces are left-right
        symmetric and framing jitters; the model's errors on the views are not the same)."""
        outs = [dequantize(self.raw(v), self._out_scale, self._out_zp)
                for v in face_views(face, self.zoom_views, self.flip_average)]
        return np.mean(outs, axis=0) if len(outs) > 1 else outs[0]

    def probabilities(self, face: np.ndarray) -> np.ndarray:
        out = self.output(face)
        if self.manifest.output_kind == "logits":
            return softmax(out, self.manifest.temperature)
        return out / max(float(out.sum()), 1e-9)

    def decide(self, probs: np.ndarray) -> Mood:
        i = int(np.argmax(probs))
        label = decide_labels(probs[None], self.labels, self.thresholds)[0]
        return Mood(label, float(probs[i]), self.labels[i], tuple(float(p) for p in probs))

    def classify(self, face: np.ndarray) -> Mood:
        return self.decide(self.probabilities(face))


def decide_labels(probs: np.ndarray, labels: list[str], thresholds: np.ndarray) -> list[str]:
    """N x labels probabilities -> the argmax label, or `unknown` below its threshold."""
    top = probs.argmax(axis=1)
    ok = probs.max(axis=1) >= thresholds[top]
    return [labels[t] if k else UNKNOWN for t, k in zip(top, ok, strict=True)]


def load_classifier(model_dir: Path, prefer: RuntimeName | None = None,
                    num_threads: int = 1) -> Classifier:
    return Classifier.from_dir(model_dir, prefer=prefer, num_threads=num_threads)
