"""Knowledge distillation and mixup for `fit`.

A larger float teacher (a finished `fit` run, e.g. mini-Xception at width 3) is run on
every augmented training batch inside the data pipeline; its logits travel packed beside
the one-hot labels (`y = [one_hot | teacher logits]`), and the student's loss is
alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T) (Hinton et al. 2015).
The loss and the metric are registered Keras objects, so a distilling run's checkpoint
resumes like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import ops

from training.runstate import last_model_path, read_state


def distill_term(teacher: Any, student: Any, t: float) -> Any:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), per face."""
    p_teacher = ops.softmax(teacher / t, axis=-1)
    kd = ops.sum(p_teacher * (ops.log(ops.clip(p_teacher, 1e-8, 1.0))
                              - ops.log_softmax(student / t, axis=-1)), axis=-1)
    return (t * t) * kd


@keras.saving.register_keras_serializable(package="moodcam")
class DistillLoss(keras.losses.Loss):
    def __init__(self, n_classes: int, alpha: float = 0.5, temperature: float = 4.0,
                 label_smoothing: float = 0.05, **kwargs: Any) -> None:
        kwargs.setdefault("name", "distill")
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        n = self.n_classes
        labels, teacher = y_true[:, :n], y_true[:, n:]
        ce = keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing)
        kd = distill_term(teacher, y_pred, self.temperature)
        return self.alpha * ce + (1.0 - self.alpha) * kd

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_classes": self.n_classes, "alpha": self.alpha,
                "temperature": self.temperature, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="moodcam")
def packed_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Accuracy against the one-hot part of a packed target."""
    k = ops.shape(y_pred)[-1]
    return ops.cast(ops.equal(ops.argmax(y_true[:, :k], axis=-1),
                              ops.argmax(y_pred, axis=-1)), "float32")


def load_teacher(run_dir: Path, size: int, labels: str, align: str) -> Any:
    """The best weights of a finished `fit` run, checked to see faces as the student does."""
    model_path = last_model_path(run_dir)
    state = read_state(run_dir)
    if state is None or not model_path.exists():
        raise ValueError(f"--teacher {run_dir}: not a fit run (no checkpoint/last.keras)")
    opts = state.get("options", {})
    mine = {"size": size, "labels": labels, "align": align}
    theirs = {"size": opts.get("size"), "labels": opts.get("labels"),
              "align": opts.get("align", "none")}
    if mine != theirs:
        raise ValueError(f"--teacher {run_dir} was trained with {theirs}; the student uses"
                         f" {mine}: they must see the same faces")
    from training.finelabels import label_head

    model = keras.models.load_model(model_path, compile=False)
    best = model_path.with_name("best.weights.h5")
    if best.exists():
        model.load_weights(best)
    model = label_head(model)
    model.trainable = False
    return model


def mixup(tf: Any, x: Any, y: Any, w: Any, alpha: float) -> tuple[Any, Any, Any]:
    """Mix each batch with a shuffled copy of itself (Zhang et al. 2018); lambda ~ Beta."""
    b = tf.shape(x)[0]
    g1 = tf.random.gamma((b,), alpha)
    g2 = tf.random.gamma((b,), alpha)
    lam = g1 / (g1 + g2 + 1e-12)
    perm = tf.random.shuffle(tf.range(b))
    lx = tf.reshape(lam, (-1, 1, 1, 1))
    ly = tf.reshape(lam, (-1, 1))
    x = lx * x + (1.0 - lx) * tf.gather(x, perm)
    y = ly * y + (1.0 - ly) * tf.gather(y, perm)
    w = lam * w + (1.0 - lam) * tf.gather(w, perm)
    return x, y, w
