"""Distillation loss, mixup, and a tiny distilling run that resumes from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import TINY, fit_tiny, write_tree

tf = pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

from training.distill import DistillLoss, mixup, packed_accuracy  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_distill_loss_is_label_ce_plus_scaled_teacher_kl() -> None:
    rng = np.random.default_rng(0)
    student = rng.normal(size=(5, 4)).astype(np.float32)
    teacher = rng.normal(size=(5, 4)).astype(np.float32)
    onehot = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 1]]
    packed = np.concatenate([onehot, teacher], axis=1)
    ce = -(onehot * np.log(_softmax(student))).sum(axis=1).mean()
    t = 3.0
    pt, ps = _softmax(teacher / t), _softmax(student / t)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(axis=1).mean() * t * t
    only_labels = DistillLoss(4, alpha=1.0, temperature=t, label_smoothing=0.0)
    only_teacher = DistillLoss(4, alpha=0.0, temperature=t, label_smoothing=0.0)
    half = DistillLoss(4, alpha=0.5, temperature=t, label_smoothing=0.0)
    assert float(only_labels(packed, student)) == pytest.approx(ce, rel=1e-5)
    assert float(only_teacher(packed, student)) == pytest.approx(kl, rel=1e-4)
    assert float(half(packed, student)) == pytest.approx(0.5 * ce + 0.5 * kl, rel=1e-4)
    # A student that equals its teacher pays no teacher loss.
    assert float(only_teacher(np.concatenate([onehot, student], 1), student)) == \
        pytest.approx(0.0, abs=1e-6)
    acc = packed_accuracy(packed, onehot * 5.0)
    assert np.allclose(np.asarray(acc), 1.0)


def test_mixup_mixes_faces_labels_and_weights_convexly() -> None:
    tf.random.set_seed(1)
    x = tf.constant(np.stack([np.full((8, 8, 1), v, np.float32) for v in (0.0, 1.0)] * 4))
    y = tf.one_hot([0, 1] * 4, 2)
    w = tf.constant([1.0, 3.0] * 4)
    xm, ym, wm = mixup(tf, x, y, w, 0.4)
    xm, ym, wm = np.asarray(xm), np.asarray(ym), np.asarray(wm)
    assert np.allclose(ym.sum(axis=1), 1.0)
    # Each face's pixel value is its share of label 1, and its weight follows the same mix.
    assert np.allclose(xm[:, 0, 0, 0], ym[:, 1], atol=1e-5)
    assert np.allclose(wm, 1.0 + 2.0 * ym[:, 1], atol=1e-5)
    assert ((ym > 0) & (ym < 1)).any()


@pytest.mark.slow
def test_a_distilling_run_trains_exports_and_resumes(tmp_path: Path) -> None:
    data = write_tree(tmp_path / "data", TINY, seed=4)
    teacher = tmp_path / "teacher"
    p = fit_tiny(data, teacher, "--epochs", "2", "--width", "1.5")
    assert p.returncode == 0, p.stderr[-3000:]
    student = tmp_path / "student"
    p = fit_tiny(data, student, "--epochs", "1", "--teacher", str(teacher), "--mixup", "0.2")
    assert p.returncode == 0, p.stderr[-3000:]
    assert (student / "model.tflite").stat().st_size > 0
    state = json.loads((student / "checkpoint" / "state.json").read_text())
    assert state["options"]["teacher"] == str(teacher) and state["epoch"] == 1
    # The checkpoint (with the registered distillation loss) resumes for a second epoch,
    # with the same teacher spelled another way (as from another RUNS= directory).
    other_spelling = tmp_path / "data" / ".." / "teacher"
    p = fit_tiny(data, student, "--epochs", "2", "--teacher", str(other_spelling), "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stderr
    state = json.loads((student / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    assert len(state["history"]["val_acc"]) == 2  # the curves' key, as in plain runs
    # Resuming without the teacher the checkpoint's loss expects is refused, clearly.
    p = fit_tiny(data, student, "--epochs", "3", "--resume")
    assert p.returncode == 2 and "same --teacher" in p.stderr and "Traceback" not in p.stderr
    # A teacher that sees other faces (another input size) is refused, clearly.
    p = fit_tiny(data, tmp_path / "bad", "--epochs", "1", "--teacher", str(teacher),
             "--size", "48")
    assert p.returncode == 2 and "same faces" in p.stderr and "Traceback" not in p.stderr
