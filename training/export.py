"""Full-integer int8 export, golden samples and the manifest the device reads."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle import Golden, save_golden
from device.classify import Classifier
from device.manifest import (
    Manifest,
    Preprocessing,
    TensorSpec,
    sha256_file,
    write_manifest,
)
from device.preprocess import face_views

log = logging.getLogger(__name__)


def convert_int8(model: Any, representative: np.ndarray) -> bytes:
    """Keras model -> int8 TFLite with int8 input and output.

    representative: N x S x S uint8 faces; the converter derives the input scale from
    their [0, 1] range (1/255, zero point -128), so quantising a camera face is exact.
    """
    import tempfile

    import tensorflow as tf

    size = int(model.input_shape[1])

    def rep() -> Any:
        # Anchor the input range at exactly [0, 1] whatever the sample holds.
        yield [np.zeros((1, size, size, 1), np.float32)]
        yield [np.ones((1, size, size, 1), np.float32)]
        for face in representative:
            yield [(face.astype(np.float32) / 255.0)[None, :, :, None]]

    with tempfile.TemporaryDirectory() as tmp:
        # A SavedModel with a fixed batch of one: the device always feeds one face, and
        # Keras 3 variables reach the converter frozen only through this export path.
        model.export(tmp, format="tf_saved_model",
                     input_signature=[tf.TensorSpec([1, size, size, 1], tf.float32)],
                     verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return bytes(conv.convert())


def tensor_specs(tflite_path: Path) -> tuple[TensorSpec, TensorSpec]:
    from device.runtime import Interpreter

    it = Interpreter(tflite_path)
    (si, zi), (so, zo) = it.input_quant, it.output_quant
    return (TensorSpec(shape=it.input_shape, dtype=it.input_dtype, scale=si,
                       zero_point=zi),
            TensorSpec(shape=it.output_shape, dtype=it.output_dtype, scale=so,
                       zero_point=zo))


def build_manifest(model_dir: Path, *, name: str, version: str | None,
                   labels: tuple[str, ...], size: int, crop_scale: float,
                   crop_shift_y: float, temperature: float, min_confidence: float,
                   label_thresholds: dict[str, float], flip_average: bool,
                   zoom_views: tuple[float, ...], metrics: dict[str, Any],
                   training: dict[str, Any], align: dict[str, Any] | None = None
                   ) -> Manifest:
    """`align`: the eye geometry measured for `--align eyes` (None: no alignment)."""
    path = model_dir / "model.tflite"
    inp, out = tensor_specs(path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    manifest = Manifest(
        name=name, version=version or now.strftime("%Y.%m.%d-%H%M"),
        created=now.isoformat().replace("+00:00", "Z"), labels=list(labels),
        input=inp, output=out, output_kind="logits", temperature=temperature,
        min_confidence=min_confidence, label_thresholds=label_thresholds,
        flip_average=flip_average, zoom_views=list(zoom_views),
        preprocessing=Preprocessing(
            size=size, crop_scale=crop_scale, crop_shift_y=crop_shift_y,
            **({} if not align else {"align": "eyes",
                                     "align_eye_distance": align["align_eye_distance"],
                                     "align_eye_y": align["align_eye_y"]})),
        model_file="model.tflite", model_sha256=sha256_file(path),
        model_bytes=path.stat().st_size, metrics=metrics, training=training)
    write_manifest(manifest, model_dir / "manifest.json")
    return manifest


def make_golden(classifier: Classifier, faces: np.ndarray) -> Golden:
    """Expected raw outputs for a few real faces, computed by the device runtime."""
    inputs = np.stack([classifier.quantize_input((f.astype(np.float32) / 255.0)[:, :, None])
                       for f in faces])
    outputs = np.stack([classifier.interpreter.invoke(x) for x in inputs])
    return Golden(inputs, outputs)


def write_golden(model_dir: Path, faces: np.ndarray) -> None:
    clf = Classifier.from_dir(model_dir)
    save_golden(model_dir / "golden.npz", make_golden(clf, faces))


def float_logits(model: Any, faces: np.ndarray, batch: int = 512,
                 flip_average: bool = False,
                 zoom_views: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """Float model logits for N x S x S uint8 faces (for calibration and agreement),
    averaged over the same views as the device: each zoom, each mirrored when
    `flip_average` (device/classify.py `Classifier.output`)."""
    if len(faces) == 0:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([model.predict_on_batch(x[i:i + batch][..., None])
                               for i in range(0, len(x), batch)])

    # Views of the float face, as the device makes them from the face it quantises.
    per_face = [face_views(f, zoom_views, flip_average) for f in faces.astype(np.float32) / 255.0]
    return np.mean([run(np.stack(view)) for view in zip(*per_face, strict=True)], axis=0)
