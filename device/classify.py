"""Classify stage: one preprocessed face -> label, confidence and per-label probabilities."""

from __future__ import annotations

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
from device.preprocess import dequantize, quantize, softmax
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
                 min_confidence: float | None = None) -> None:
        verify_model_file(manifest, model_path)
        self.manifest = manifest
        self.model_path = model_path
        self.interpreter = Interpreter(model_path, prefer=prefer, num_threads=num_threads)
        self._check_against_manifest()
        self.min_confidence = (manifest.min_confidence if min_confidence is None
                               else min_confidence)
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

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        out = dequantize(raw, self._out_scale, self._out_zp)
        if self.manifest.output_kind == "logits":
            return softmax(out, self.manifest.temperature)
        return out / max(float(out.sum()), 1e-9)

    def decide(self, probs: np.ndarray) -> Mood:
        i = int(np.argmax(probs))
        conf = float(probs[i])
        top = self.labels[i]
        label = top if conf >= self.min_confidence else UNKNOWN
        return Mood(label, conf, top, tuple(float(p) for p in probs))

    def classify(self, face: np.ndarray) -> Mood:
        return self.decide(self.probabilities(self.raw(face)))


def load_classifier(model_dir: Path, prefer: RuntimeName | None = None,
                    num_threads: int = 1) -> Classifier:
    return Classifier.from_dir(model_dir, prefer=prefer, num_threads=num_threads)
