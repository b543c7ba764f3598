"""Classify stage: the manifest's decision rule (mirror averaging, per-label thresholds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.classify import Classifier, decide_labels
from device.manifest import ManifestError, load_manifest
from device.preprocess import dequantize, frame_face_tensor
from tests.test_detect import FACE_BOX
from training.metrics import count_thresholds, evaluate_probs


def variant(model_dir: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the shipped model whose manifest differs only by `changes`."""
    out = tmp_path / "model"
    out.mkdir(parents=True)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest.update(changes)
    shutil.copy(model_dir / manifest["model_file"], out / manifest["model_file"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture
def face(astronaut_bgr: np.ndarray, model_dir: Path) -> np.ndarray:
    m = load_manifest(model_dir / "manifest.json")
    return frame_face_tensor(astronaut_bgr, FACE_BOX, m.size, m.preprocessing.crop_scale,
                             m.preprocessing.crop_shift_y)


def test_flip_average_is_the_mean_of_the_face_and_its_mirror(
        model_dir: Path, tmp_path: Path, face: np.ndarray) -> None:
    clf = Classifier.from_dir(variant(model_dir, tmp_path, flip_average=True,
                                      zoom_views=[1.0]))
    scale, zp = clf.interpreter.output_quant
    plain = dequantize(clf.raw(face), scale, zp)
    mirror = dequantize(clf.raw(face[:, ::-1]), scale, zp)
    assert not np.array_equal(plain, mirror), "the test face should not be symmetric"
    np.testing.assert_allclose(clf.output(face), (plain + mirror) / 2, rtol=1e-6)
    single = Classifier.from_dir(variant(model_dir, tmp_path / "b", flip_average=False,
                                         zoom_views=[1.0]))
    np.testing.assert_allclose(single.output(face), plain, rtol=1e-6)


def test_zoom_views_average_the_face_and_its_central_part_each_mirrored(
        model_dir: Path, tmp_path: Path, face: np.ndarray) -> None:
    clf = Classifier.from_dir(variant(model_dir, tmp_path, flip_average=True,
                                      zoom_views=[1.0, 0.9]))
    scale, zp = clf.interpreter.output_quant
    n = face.shape[0]
    m = round(n * 0.9)
    o = (n - m) // 2
    inner = cv2.resize(face[o:o + m, o:o + m], (n, n),
                       interpolation=cv2.INTER_LINEAR)[:, :, None]
    assert inner.shape == face.shape
    views = [face, inner, face[:, ::-1], inner[:, ::-1]]
    outs = [dequantize(clf.raw(v), scale, zp) for v in views]
    assert not np.array_equal(outs[0], outs[1]), "the zoomed view should differ"
    np.testing.assert_allclose(clf.output(face), np.mean(outs, axis=0), rtol=1e-6)


def test_zoom_views_outside_the_face_are_rejected(model_dir: Path, tmp_path: Path) -> None:
    bad = variant(model_dir, tmp_path, zoom_views=[1.0, 1.3])
    with pytest.raises(ManifestError, match=r"zoom_views.*1.3"):
        load_manifest(bad / "manifest.json")


def probs_with_top(labels: list[str], name: str, p_top: float) -> np.ndarray:
    p = np.full(len(labels), (1 - p_top) / (len(labels) - 1))
    p[labels.index(name)] = p_top
    return p


def test_per_label_threshold_decides_that_label_only(
        model_dir: Path, tmp_path: Path) -> None:
    labels = load_manifest(model_dir / "manifest.json").labels
    clf = Classifier.from_dir(variant(model_dir, tmp_path, label_thresholds={"sad": 0.5},
                                      min_confidence=0.7))
    for name, p_top, expected in (("sad", 0.6, "sad"), ("happy", 0.6, "unknown"),
                                  ("happy", 0.75, "happy")):
        assert clf.decide(probs_with_top(labels, name, p_top)).label == expected
    # An operator's min_confidence in the config replaces every label's threshold.
    flat = Classifier.from_dir(clf.model_path.parent, min_confidence=0.7)
    assert flat.decide(probs_with_top(labels, "sad", 0.6)).label == "unknown"


def test_threshold_for_a_label_that_does_not_exist_is_rejected(
        model_dir: Path, tmp_path: Path) -> None:
    bad = variant(model_dir, tmp_path, label_thresholds={"angry": 0.4})
    with pytest.raises(ManifestError, match=r"label_thresholds.*angry"):
        load_manifest(bad / "manifest.json")


def test_count_thresholds_make_counts_match_the_truth() -> None:
    rng = np.random.default_rng(0)
    labels = ["happy", "sad"]
    y = rng.integers(0, 2, 2000)
    # A model sure of happy, unsure of sad: sad faces get low top probabilities.
    conf = np.where(y == 0, rng.uniform(0.6, 1.0, len(y)), rng.uniform(0.5, 0.8, len(y)))
    wrong = rng.random(len(y)) < 0.1
    top = np.where(wrong, 1 - y, y)
    probs = np.zeros((len(y), 2))
    probs[np.arange(len(y)), top] = conf
    probs[np.arange(len(y)), 1 - top] = 1 - conf
    flat = evaluate_probs(probs, [labels[i] for i in y], labels, np.array([0.7, 0.7]))
    th = count_thresholds(probs, y, labels)
    tuned = evaluate_probs(probs, [labels[i] for i in y], labels,
                           np.array([th["happy"], th["sad"]]))
    assert flat["counts"]["sad"]["count_error"] < -0.3
    for lab in labels:
        assert abs(tuned["counts"][lab]["count_error"]) < 0.02, (lab, th)
    assert th["sad"] < th["happy"]


def test_decide_labels_matches_classifier_decide(model_dir: Path) -> None:
    clf = Classifier.from_dir(model_dir)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(len(clf.labels)), 200)
    batch = decide_labels(probs, clf.labels, clf.thresholds)
    assert batch == [clf.decide(p).label for p in probs]
