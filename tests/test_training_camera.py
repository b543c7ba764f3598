"""Camera-path evaluation: FER faces in camera-sized frames, through the device's detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.camera_eval import camera_frame, evaluate_camera_path


def test_camera_frame_is_a_640x480_frame_holding_the_face() -> None:
    face = np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8)
    frame = camera_frame(face, np.random.default_rng(1))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8


def test_shipped_model_through_the_camera_path(model_dir: Path, fer_zip: Path,
                                               yunet_path: Path) -> None:
    m = evaluate_camera_path(model_dir, fer_zip, yunet_path, [1.0, 1.6], limit=60, seed=3)
    assert m["detection_rate"] > 0.8
    tight, loose = m["by_crop_scale"]["1"], m["by_crop_scale"]["1.6"]
    # FER framing (measured crop_scale ~1.0) beats a loose crop on the same detections.
    assert tight["accuracy_argmax"] > loose["accuracy_argmax"]
