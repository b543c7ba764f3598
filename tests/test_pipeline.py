"""The whole stage chain on real frames with the shipped model and YuNet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.capture import SampleSource
from device.classify import Classifier
from device.detect import YuNetDetector
from device.payloads import validate_mood
from device.pipeline import STAGES, Pipeline, model_info
from device.preprocess import frame_face_tensor
from device.track import Tracker
from tests.test_detect import FACE_BOX, iou, mosaic


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> Classifier:
    return Classifier.from_dir(model_dir)


@pytest.fixture(scope="module")
def detector(yunet_path: Path) -> YuNetDetector:
    return YuNetDetector(yunet_path, max_faces=32)


def build(detector: YuNetDetector, classifier: Classifier, window_s: float = 60.0,
          **kw: Any) -> tuple[Pipeline, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    return Pipeline.build(detector, classifier, "shop-12", window_s, sink=out.append,
                          **kw), out


def test_one_face_is_cropped_like_training_and_classified(
        detector: YuNetDetector, classifier: Classifier, astronaut_bgr: np.ndarray) -> None:
    pipe, _ = build(detector, classifier)
    (face,) = pipe.process(astronaut_bgr, 1000.0)
    assert iou(np.array(face.box), FACE_BOX) > 0.5
    assert face.mood.label in [*classifier.labels, "unknown"]
    assert 0 < face.mood.confidence <= 1
    # The crop is the shared preprocessing with the manifest's framing, nothing else.
    pre = classifier.manifest.preprocessing
    direct = classifier.classify(frame_face_tensor(astronaut_bgr, face.box, pre.size,
                                                   pre.crop_scale, pre.crop_shift_y))
    assert direct == face.mood
    for stage in ("detect", "crop", "classify", "track", "aggregate"):
        assert pipe.times.calls[stage] == 1, stage
    assert set(pipe.times.per_frame_ms()) == set(STAGES)


def test_zero_and_thirty_faces(detector: YuNetDetector, classifier: Classifier,
                               astronaut_bgr: np.ndarray) -> None:
    pipe, out = build(detector, classifier, window_s=1.0)
    assert pipe.process(np.zeros((480, 640, 3), np.uint8), 0.0) == []
    faces = pipe.process(mosaic(astronaut_bgr), 0.5)
    assert len(faces) == 30 and len({f.track_id for f in faces}) == 30
    pipe.close(0.9)
    (p,) = out
    validate_mood({**p, "seq": 1})
    assert p["frames"] == 2 and p["detections_total"] == 30
    assert p["viewers_total"] == 0  # one frame each: below min_hits, not people


def test_sample_scenario_counts_people_not_frames(
        detector: YuNetDetector, classifier: Classifier) -> None:
    fps = 5.0
    pipe, out = build(detector, classifier, window_s=12.0,
                      tracker=Tracker(min_hits=3, max_age_s=1.5))
    with SampleSource(fps=fps, realtime=False, frames=120) as src:  # one 24 s cycle
        while (f := src.read()) is not None:
            pipe.process(f.image, f.ts)
    pipe.close(24.0)
    assert [p["start"] for p in out] == ["1970-01-01T00:00:00Z", "1970-01-01T00:00:12Z"]
    for p in out:
        validate_mood(p)
        assert p["frames"] == 60 and p["fps"] == 5.0
        assert p["model"] == model_info(classifier)
    # Person A (0-8 s) leaves in the first window; B (10-20 s) and C (13-20 s) in the second.
    assert [p["viewers_total"] for p in out] == [1, 2]
    assert [p["detections_total"] for p in out] == [40 + 10, 40 + 35]
    assert out[0]["dwell_s"]["max"] == pytest.approx(7.8)
    assert sorted([out[1]["dwell_s"]["max"], out[1]["dwell_s"]["total"]]) == pytest.approx(
        [9.8, 9.8 + 6.8])


def test_tick_closes_windows_while_the_camera_is_down(
        detector: YuNetDetector, classifier: Classifier, astronaut_bgr: np.ndarray) -> None:
    pipe, out = build(detector, classifier, window_s=10.0,
                      tracker=Tracker(min_hits=2, max_age_s=1.0))
    for i in range(5):
        pipe.process(astronaut_bgr, 100.0 + i * 0.2)
    pipe.tick(105.0)  # the person's track ends: nothing in view any more
    assert pipe.tracker.active == 0 and out == []
    pipe.tick(111.5)  # window [100, 110) is over, plus the tracker's grace
    (p,) = out
    assert p["viewers_total"] == 1 and p["frames"] == 5
    assert pipe.windows_emitted == 1 and pipe.times.calls["publish"] == 1


def test_content_changes_split_windows(
        detector: YuNetDetector, classifier: Classifier, astronaut_bgr: np.ndarray) -> None:
    pipe, out = build(detector, classifier, content_id="promo-1")
    pipe.process(astronaut_bgr, 60.0)
    pipe.set_content("promo-2", 61.0)
    pipe.process(astronaut_bgr, 62.0)
    pipe.close(63.0)
    assert [p["content_id"] for p in out] == ["promo-1", "promo-2"]
    assert [p["detections_total"] for p in out] == [1, 1]


def test_grayscale_frames_work(detector: YuNetDetector, classifier: Classifier,
                               astronaut_bgr: np.ndarray) -> None:
    pipe, _ = build(detector, classifier)
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    assert len(pipe.process(gray, 0.0)) == 1


def test_every_installed_runtime_gives_the_same_mood(
        detector: YuNetDetector, model_dir: Path, astronaut_bgr: np.ndarray) -> None:
    from device.runtime import available_runtimes

    results = {}
    for rt in available_runtimes():
        clf = Classifier.from_dir(model_dir, prefer=rt)
        assert clf.runtime == rt
        pipe, _ = build(detector, clf)
        (face,) = pipe.process(astronaut_bgr, 0.0)
        results[rt] = face.mood
    assert results
    first = next(iter(results.values()))
    for mood in results.values():
        assert mood.top == first.top
        assert np.allclose(mood.probs, first.probs, atol=0.02)
