"""Training and the device feed the model identical tensors for the same face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.classify import Classifier
from device.preprocess import crop_square, face_tensor, frame_face_tensor, quantize, to_gray
from tests.synthetic import face
from training.data import to_array


def _faces() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    small = [face(lab, rng) for lab in ("happy", "sad", "neutral")]  # FER-sized, 48 px
    big = [face("happy", rng, size=173), face("sad", rng, size=96)]  # camera-sized crops
    return small + big


@pytest.mark.parametrize("size", [48, 64, 96])
def test_training_arrays_equal_device_tensors(size: int) -> None:
    faces = _faces()
    train_u8 = to_array(faces, size)
    for img, t in zip(faces, train_u8, strict=True):
        device = face_tensor(img, size)
        assert device.shape == (size, size, 1) and device.dtype == np.float32
        assert np.array_equal(device[:, :, 0], t.astype(np.float32) / 255.0)


def test_training_dataset_pipeline_equals_device_tensors() -> None:
    tf = pytest.importorskip("tensorflow", reason="needs the [train] extra")
    from training.fit import _dataset

    faces = _faces()
    x = to_array(faces, 64)
    ds = _dataset(tf, x, np.zeros(len(x), np.int64), 4, 8, None, None, 0, shuffle=False)
    xb, _, _ = next(iter(ds))
    for img, t in zip(faces, xb.numpy(), strict=True):
        assert np.array_equal(face_tensor(img, 64), t)


def test_quantised_input_is_exact_for_uint8_pixels(model_dir: Path) -> None:
    clf = Classifier.from_dir(model_dir)
    scale, zp = clf.interpreter.input_quant
    img = _faces()[0]
    q = clf.quantize_input(face_tensor(img, clf.size))
    pixels = to_array([img], clf.size)[0].astype(np.int32)
    # 1/255 scale and -128 zero point: each pixel maps to exactly pixel - 128.
    assert np.array_equal(q[:, :, 0].astype(np.int32), pixels + zp)
    assert np.array_equal(q, quantize(face_tensor(img, clf.size), scale, zp, "int8"))


def test_frame_crop_matches_a_manual_crop() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    box = (300, 200, 80, 100)
    crop = crop_square(to_gray(frame), box, 1.2)
    side = round(100 * 1.2)
    assert crop.shape == (side, side)
    cx, cy = 300 + 40, 200 + 50
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    assert np.array_equal(crop, to_gray(frame)[y0:y0 + side, x0:x0 + side])
    t = frame_face_tensor(frame, box, 64, 1.2)
    assert np.array_equal(t, face_tensor(crop, 64))


def test_crop_at_the_border_replicates_edges() -> None:
    gray = np.tile(np.arange(100, dtype=np.uint8), (100, 1))
    crop = crop_square(gray, (-10, 40, 30, 30), 1.0)
    assert crop.shape == (30, 30)
    assert (crop[:, :10] == 0).all()  # replicated first column, not black padding by luck
    assert crop[0, 10] == 0 and crop[0, 11] == 1
    with pytest.raises(ValueError, match="outside"):
        crop_square(gray, (500, 500, 10, 10), 1.0)
