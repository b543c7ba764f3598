"""`fit --fine-labels`: a second head on the seven FER emotions, trained and then dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import TINY, fit_tiny, write_tree

tf = pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

from training.finelabels import FineLabelLoss, head_accuracy  # noqa: E402


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_the_loss_is_label_ce_plus_weighted_fer_ce_and_the_teacher_term() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(6, 4 + 7)).astype(np.float32)
    labels = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 1, 3]]
    fer = np.eye(7, dtype=np.float32)[[3, 5, 4, 0, 5, 6]]
    teacher = rng.normal(size=(6, 4)).astype(np.float32)
    ce = -(labels * _log_softmax(pred[:, :4])).sum(1).mean()
    ce_fer = -(fer * _log_softmax(pred[:, 4:])).sum(1).mean()
    plain = FineLabelLoss(4, 0.5, label_smoothing=0.0)
    assert float(plain(np.concatenate([labels, fer], 1), pred)) == pytest.approx(
        ce + 0.5 * ce_fer, rel=1e-5)
    # With a teacher: alpha * CE + (1 - alpha) * T^2 * KL, plus the same FER term.
    t = 2.0
    pt = np.exp(_log_softmax(teacher / t))
    kl = (pt * (np.log(pt) - _log_softmax(pred[:, :4] / t))).sum(1).mean() * t * t
    taught = FineLabelLoss(4, 0.5, label_smoothing=0.0, teacher=True, alpha=0.25,
                           temperature=t)
    packed = np.concatenate([labels, fer, teacher], 1)
    assert float(taught(packed, pred)) == pytest.approx(
        0.25 * ce + 0.75 * kl + 0.5 * ce_fer, rel=1e-4)
    # The FER head's weight matters: at 0 only the label term is left.
    assert float(FineLabelLoss(4, 0.0, label_smoothing=0.0)(
        np.concatenate([labels, fer], 1), pred)) == pytest.approx(ce, rel=1e-5)
    # Accuracy reads the label head only, never the FER logits beside it.
    right = np.concatenate([labels * 5.0, fer * 9.0], 1)
    assert np.allclose(np.asarray(head_accuracy(np.concatenate([labels, fer], 1), right,
                                                n_classes=4)), 1.0)


def _outputs(run: Path) -> int:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(run / "model.tflite"))
    return int(it.get_output_details()[0]["shape"][-1])


@pytest.mark.slow
def test_a_fine_label_run_exports_its_label_head_resumes_and_teaches(tmp_path: Path) -> None:
    data = write_tree(tmp_path / "data", {**TINY, "train": {**TINY["train"], "surprise": 12}},
                      seed=5)
    run = tmp_path / "fine"
    p = fit_tiny(data, run, "--epochs", "1", "--fine-labels", "0.5")
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    # The exported model has the label head alone: four logits, no FER head.
    assert _outputs(run) == len(manifest["labels"]) == 4
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["options"]["fine_labels"] == 0.5 and "val_acc" in state["history"]
    p = fit_tiny(data, run, "--epochs", "2", "--fine-labels", "0.5", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stderr
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 2
    # Resuming with another weight (so another output) is refused in one line.
    p = fit_tiny(data, run, "--epochs", "3", "--resume")
    assert p.returncode == 2 and "same --fine-labels" in p.stderr
    assert "Traceback" not in p.stderr
    # It teaches a plain student (its label head only), and a student with a FER head
    # learns from a teacher too.
    p = fit_tiny(data, tmp_path / "student", "--epochs", "1", "--teacher", str(run),
                 "--fine-labels", "0.5")
    assert p.returncode == 0, p.stderr[-3000:]
    assert _outputs(tmp_path / "student") == 4
    # Ensembles train nothing, so the option is refused there.
    p = fit_tiny(data, tmp_path / "ens", "--members", f"{run},{tmp_path / 'student'}",
                 "--fine-labels", "0.5")
    assert p.returncode == 2 and "--fine-labels" in p.stderr and "Traceback" not in p.stderr


def test_the_targets_carry_each_face_s_fer_emotion_beside_its_label() -> None:
    from training.fit import _dataset

    x = np.zeros((5, 8, 8), np.uint8)
    y = np.array([0, 1, 2, 3, 3])
    fer = np.array([3, 5, 4, 0, 6])  # happy, sad, neutral, angry, surprise
    (_, target, _), = _dataset(tf, x, y, 4, 8, None, None, 0, False, fine=fer).take(1)
    target = np.asarray(target)
    assert target.shape == (5, 11)
    assert (target[:, :4].argmax(1) == y).all() and (target[:, 4:].argmax(1) == fer).all()
    (_, plain, _), = _dataset(tf, x, y, 4, 8, None, None, 0, False).take(1)
    assert np.asarray(plain).shape == (5, 4)
