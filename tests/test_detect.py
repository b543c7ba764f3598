"""Face detection on real images: YuNet (from ../shared) and the Haar fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.detect import (
    DetectorError,
    FaceDetector,
    HaarDetector,
    YuNetDetector,
    make_detector,
)

FACE_BOX = (178, 63, 90, 113)  # YuNet's box on skimage's astronaut


def mosaic(astronaut: np.ndarray, rows: int = 5, cols: int = 6) -> np.ndarray:
    """A 640x480 frame with rows*cols copies of the astronaut's head."""
    head = astronaut[20:220, 140:310]
    cw, ch = 640 // cols, 480 // rows
    tile = cv2.resize(head, (cw, ch), interpolation=cv2.INTER_AREA)
    frame = np.zeros((480, 640, 3), np.uint8)
    for r in range(rows):
        for c in range(cols):
            frame[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = tile
    return frame


def small_face(astronaut: np.ndarray, side: int = 48) -> np.ndarray:
    """The astronaut's face cropped tight and shrunk to a FER-sized grayscale image."""
    x, y, w, h = FACE_BOX
    face = cv2.cvtColor(astronaut[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY)
    return cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(params=["yunet", "haar"])
def detector(request: pytest.FixtureRequest, yunet_path: Path) -> FaceDetector:
    if request.param == "yunet":
        return YuNetDetector(yunet_path, max_faces=64)
    return HaarDetector(max_faces=64)


def iou(a: np.ndarray, b: tuple[int, int, int, int]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def test_exactly_one_face_on_the_astronaut(detector: FaceDetector,
                                           astronaut_bgr: np.ndarray) -> None:
    d = detector.detect(astronaut_bgr)
    assert len(d) == 1
    assert d.boxes.dtype == np.int32 and d.boxes.shape == (1, 4)
    assert iou(d.boxes[0], FACE_BOX) > 0.5
    assert 0 < d.scores[0] <= 1


def test_no_face_on_a_blank_frame(detector: FaceDetector) -> None:
    for frame in (np.zeros((480, 640, 3), np.uint8), np.full((480, 640), 128, np.uint8)):
        assert len(detector.detect(frame)) == 0


def test_thirty_face_mosaic(detector: FaceDetector, astronaut_bgr: np.ndarray) -> None:
    d = detector.detect(mosaic(astronaut_bgr))
    assert len(d) == 30
    assert np.all(np.diff(d.scores) <= 0)  # best first
    # One box per tile, each inside its tile.
    tiles = {(int(x + w / 2) // 106, int(y + h / 2) // 96) for x, y, w, h in d.boxes}
    assert len(tiles) == 30


def test_max_faces_caps_the_count(yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    d = YuNetDetector(yunet_path, max_faces=10).detect(mosaic(astronaut_bgr))
    assert len(d) == 10


def test_min_face_size_drops_small_faces(yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    frame = mosaic(astronaut_bgr)  # faces ~50 px wide
    assert len(YuNetDetector(yunet_path, min_face=80, max_faces=64).detect(frame)) == 0
    assert len(YuNetDetector(yunet_path, min_face=30, max_faces=64).detect(frame)) == 30


def test_a_48px_fer_sized_face_is_found(detector: FaceDetector,
                                        astronaut_bgr: np.ndarray) -> None:
    face = small_face(astronaut_bgr)
    d = detector.detect(face)
    assert len(d) == 1
    x, y, w, h = d.boxes[0]
    assert x >= 0 and y >= 0 and x + w <= 48 and y + h <= 48  # mapped back, clipped
    assert w >= 30 and h >= 30


def test_yunet_follows_frame_size_changes(yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    det = YuNetDetector(yunet_path)
    big = cv2.resize(astronaut_bgr, (1024, 1024))
    assert len(det.detect(astronaut_bgr)) == 1
    (box,) = det.detect(big).boxes
    assert iou(box / 2, FACE_BOX) > 0.5


def test_make_detector_choices(yunet_path: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(make_detector(yunet_path), YuNetDetector)
    assert isinstance(make_detector(yunet_path, kind="haar"), HaarDetector)
    missing = tmp_path / "nope.onnx"
    # A configured path that does not exist falls back to the dev copy beside the repo...
    assert isinstance(make_detector(missing), YuNetDetector)
    # ...and without one, to Haar with a warning, or to a clear error if YuNet was required.
    monkeypatch.setattr("device.detect.DEV_YUNET", tmp_path / "also-missing.onnx")
    assert isinstance(make_detector(missing), HaarDetector)
    assert "falling back to the Haar cascade" in caplog.text
    with pytest.raises(DetectorError, match="YuNet model not found"):
        make_detector(missing, kind="yunet")


def test_corrupt_yunet_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "face_detection_yunet_2023mar.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(DetectorError, match="cannot load YuNet"):
        YuNetDetector(bad)


def test_frames_must_be_uint8(yunet_path: Path) -> None:
    with pytest.raises(ValueError):
        YuNetDetector(yunet_path).detect(np.zeros((10, 10, 3), np.float32))


def test_detection_on_a_shrunk_frame_maps_boxes_back(yunet_path: Path,
                                                     astronaut_bgr: np.ndarray) -> None:
    frame = cv2.resize(astronaut_bgr, (640, 640))  # the face ~115 px wide
    full = YuNetDetector(yunet_path, min_face=36).detect(frame)
    det = YuNetDetector(yunet_path, min_face=36, input_width=320)
    assert det.shrink_factor(640) == 0.5
    shrunk = det.detect(frame)
    assert len(full) == len(shrunk) == 1
    assert iou(shrunk.boxes[0], tuple(full.boxes[0])) > 0.85  # full-frame pixels
    # The mosaic's ~50 px faces survive a shrink to 320 (25 px, above YuNet's ~10 px).
    assert len(YuNetDetector(yunet_path, min_face=30, max_faces=64,
                             input_width=320).detect(mosaic(astronaut_bgr))) == 30


def test_shrinking_stops_where_min_face_would_vanish(yunet_path: Path) -> None:
    # min_face 36 at 1/4 would be 9 px, below YuNet's reach: shrink only to 12/36.
    assert YuNetDetector(yunet_path, min_face=36, input_width=160).shrink_factor(640) == 1 / 3
    assert YuNetDetector(yunet_path, input_width=0).shrink_factor(640) == 1.0
    assert YuNetDetector(yunet_path, input_width=640).shrink_factor(320) == 1.0
    # The default, 640: a 640x480 camera's frames stay whole, a 1280x720 one's are halved.
    assert YuNetDetector(yunet_path, min_face=36, input_width=640).shrink_factor(640) == 1.0
    assert YuNetDetector(yunet_path, min_face=36, input_width=640).shrink_factor(1280) == 0.5
    assert not HaarDetector.can_shrink  # its min-size logic is in frame pixels


def tight_face_frame(astronaut: np.ndarray, side: int, at: tuple[int, int] = (300, 200)
                     ) -> np.ndarray:
    """A 640x480 frame with the astronaut's face cropped tight (like a FER face) at `side`
    px: too little surroundings for a shrunk pass to be sure of it."""
    frame = np.full((480, 640, 3), 120, np.uint8)
    x, y = at
    frame[y:y + side, x:x + side] = cv2.resize(small_face(astronaut, 90), (side, side),
                                               interpolation=cv2.INTER_CUBIC)[..., None]
    return frame


def test_a_weak_face_of_the_shrunk_pass_is_rechecked_in_its_full_resolution_region(
        yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    """detector.recheck_score: the shrunk pass sees the 88 px face only weakly (score
    ~0.3 at 320 px wide) and drops it; the recheck finds it in its region of the full
    frame, with its box and landmarks in frame pixels, as the full-frame pass does."""
    frame = tight_face_frame(astronaut_bgr, 88)
    full = YuNetDetector(yunet_path, min_face=36).detect(frame)
    assert len(full) == 1
    assert len(YuNetDetector(yunet_path, min_face=36, input_width=320).detect(frame)) == 0
    det = YuNetDetector(yunet_path, min_face=36, input_width=320, recheck_score=0.1)
    found = det.detect(frame)
    assert len(found) == 1 and det.rechecks == 1
    assert found.scores[0] >= 0.7
    assert iou(found.boxes[0], tuple(full.boxes[0])) > 0.85
    assert found.landmarks is not None and full.landmarks is not None
    assert np.abs(found.landmarks - full.landmarks).max() < 4.0


def test_the_recheck_leaves_sure_faces_alone_and_finds_nothing_in_an_empty_frame(
        yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    det = YuNetDetector(yunet_path, min_face=30, max_faces=64, input_width=320,
                        recheck_score=0.1)
    assert len(det.detect(mosaic(astronaut_bgr))) == 30  # each face once, not twice
    assert len(det.detect(np.full((480, 640, 3), 120, np.uint8))) == 0
    # A full-frame pass has no finer view to recheck with: it keeps only sure faces (this
    # 45 px one scores ~0.5 on the full frame).
    weak = tight_face_frame(astronaut_bgr, 45)
    assert len(YuNetDetector(yunet_path, score_threshold=0.3, min_face=36).detect(weak)) == 1
    lowered = YuNetDetector(yunet_path, min_face=36, recheck_score=0.1)
    assert lowered.shrink_factor(640) == 1.0
    assert len(lowered.detect(weak)) == 0
    assert lowered.rechecks == 0
