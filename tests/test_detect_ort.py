"""YuNet on onnxruntime (device/yunet_ort.py) against OpenCV's FaceDetectorYN: the same
faces, boxes, landmarks and scores on real images of every size the device feeds it."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.detect import DetectorError, YuNetDetector
from device.yunet_ort import ModelFormatError, OrtYuNet, dynamic_model
from tests.test_detect import mosaic, small_face


def images(astronaut: np.ndarray) -> list[np.ndarray]:
    """A camera frame of many faces, the astronaut whole and at odd sizes (padding to a
    multiple of 32 differs), the recheck's 160 px square and an upscaled FER face."""
    return [mosaic(astronaut), astronaut, cv2.resize(astronaut, (333, 251)),
            cv2.resize(astronaut, (160, 160)), cv2.resize(astronaut, (640, 480)),
            cv2.cvtColor(cv2.resize(small_face(astronaut), (160, 160)), cv2.COLOR_GRAY2BGR),
            np.zeros((480, 640, 3), np.uint8)]


@pytest.mark.parametrize("threshold", [0.7, 0.3])
def test_onnxruntime_finds_the_faces_opencv_finds(yunet_path: Path, astronaut_bgr: np.ndarray,
                                                  threshold: float) -> None:
    data = yunet_path.read_bytes()
    found = 0
    for img in images(astronaut_bgr):
        size = (img.shape[1], img.shape[0])
        ref = cv2.FaceDetectorYN.create(str(yunet_path), "", size, threshold, 0.3, 5000)
        want = ref.detect(img)[1]
        got = OrtYuNet(data, size, threshold, 0.3).detect(img)[1]
        if want is None:
            assert got is None
            continue
        assert got is not None and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-3)
        found += len(want)
    assert found >= 30  # the mosaic's 30 heads, and the astronaut's


def test_one_net_follows_its_input_size(yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    net = OrtYuNet(yunet_path.read_bytes(), (512, 512), 0.7, 0.3)
    first = net.detect(astronaut_bgr)[1]
    small = cv2.resize(astronaut_bgr, (256, 256))
    net.setInputSize((256, 256))
    half = net.detect(small)[1]
    assert first is not None and half is not None and len(first) == len(half) == 1
    assert np.abs(half[0, :4] * 2 - first[0, :4]).max() < 8
    with pytest.raises(ValueError, match="input size"):
        net.detect(astronaut_bgr)


def test_the_rewrite_frees_the_fixed_dimensions_and_moves_no_byte(yunet_path: Path) -> None:
    import onnxruntime as ort

    data = yunet_path.read_bytes()
    out = dynamic_model(data)
    assert len(out) == len(data)
    assert sum(a != b for a, b in zip(out, data, strict=True)) < 200
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.shape[:2] == [1, 3] and all(isinstance(d, str) for d in inp.shape[2:])
    assert len({str(o.shape[1]) for o in sess.get_outputs()}) == 12  # all different
    with pytest.raises(ModelFormatError):
        dynamic_model(b"not an onnx file")


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_a_damaged_model_is_a_one_line_error(yunet_path: Path, tmp_path: Path,
                                             backend: str) -> None:
    bad = tmp_path / "face_detection_yunet_2023mar.onnx"
    bad.write_bytes(yunet_path.read_bytes()[:50_000])
    with pytest.raises(DetectorError, match="cannot load YuNet model") as e:
        YuNetDetector(bad, backend=backend)
    assert "\n" not in str(e.value)


def test_without_onnxruntime_the_error_names_the_fix(yunet_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.delitem(sys.modules, "device.yunet_ort", raising=False)
    with pytest.raises(DetectorError, match=r'detector\.backend = "opencv"'):
        YuNetDetector(yunet_path, backend="onnxruntime")
    assert len(YuNetDetector(yunet_path, backend="opencv").detect(
        np.zeros((480, 640, 3), np.uint8))) == 0


def test_both_backends_give_the_device_the_same_detections(yunet_path: Path,
                                                           astronaut_bgr: np.ndarray) -> None:
    """Through the device's detector: shrinking, min_face and the recheck as well."""
    for kw in ({}, {"input_width": 320, "recheck_score": 0.1, "min_face": 36}):
        a = YuNetDetector(yunet_path, backend="onnxruntime", **kw)  # type: ignore[arg-type]
        b = YuNetDetector(yunet_path, backend="opencv", **kw)  # type: ignore[arg-type]
        for img in images(astronaut_bgr):
            da, db = a.detect(img), b.detect(img)
            assert np.array_equal(da.boxes, db.boxes)
            np.testing.assert_allclose(da.scores, db.scores, atol=1e-4)
