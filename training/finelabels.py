"""`fit --fine-labels W`: a second head that also learns the seven FER emotions.

The shipped label set pools angry, disgust, fear and surprise into `other`, and a quarter
to a third of the sad faces the models miss are called other (README, issue 13). A second
Dense head on the same pooled features is trained on the seven FER emotions with weight
W, so the features must keep fear and anger apart from sadness; the head is dropped after
training, so the exported model, its size and its cost are those of the plain run.

During training the model's output is packed, `[label logits | 7 FER logits]`, and so is
the target, `[one-hot label | one-hot FER emotion | teacher logits when distilling]`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from training.data import FER_EMOTIONS

N_FINE = len(FER_EMOTIONS)
HEAD = "logits"  # the label head's layer name in every architecture (training/models.py)
FINE_HEAD = "fine_logits"


def with_fine_head(model: Any) -> Any:
    """The model with a FER-7 head beside its label head, outputs packed side by side."""
    features = model.get_layer(HEAD).input
    fine = keras.layers.Dense(N_FINE, name=FINE_HEAD)(features)
    packed = keras.layers.Concatenate(name="packed")([model.output, fine])
    return keras.Model(model.input, packed, name=model.name)


def label_head(model: Any) -> Any:
    """The model that export, calibration and teaching use: the label logits alone."""
    names = {layer.name for layer in model.layers}
    if FINE_HEAD not in names:
        return model
    return keras.Model(model.input, model.get_layer(HEAD).output, name=model.name)


@keras.saving.register_keras_serializable(package="moodcam")
class FineLabelLoss(keras.losses.Loss):
    """CE(labels) + W * CE(FER emotions), or with a teacher
    alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher || student) + W * CE(FER emotions)."""

    def __init__(self, n_classes: int, fine_weight: float, label_smoothing: float = 0.05,
                 teacher: bool = False, alpha: float = 0.5, temperature: float = 4.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("name", "fine_labels")
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        self.fine_weight = float(fine_weight)
        self.label_smoothing = float(label_smoothing)
        self.teacher = bool(teacher)
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        from training.distill import distill_term

        n, m = self.n_classes, self.n_classes + N_FINE
        student = y_pred[:, :n]
        ce = keras.losses.categorical_crossentropy(
            y_true[:, :n], student, from_logits=True, label_smoothing=self.label_smoothing)
        fine = keras.losses.categorical_crossentropy(
            y_true[:, n:m], y_pred[:, n:m], from_logits=True,
            label_smoothing=self.label_smoothing)
        if self.teacher:
            kd = distill_term(y_true[:, m:], student, self.temperature)
            ce = self.alpha * ce + (1.0 - self.alpha) * kd
        return ce + self.fine_weight * fine

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_classes": self.n_classes,
                "fine_weight": self.fine_weight, "label_smoothing": self.label_smoothing,
                "teacher": self.teacher, "alpha": self.alpha, "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="moodcam")
def head_accuracy(y_true: Any, y_pred: Any, n_classes: int = 0) -> Any:
    """Accuracy of the label head against the one-hot labels of a packed target."""
    n = n_classes
    return ops.cast(ops.equal(ops.argmax(y_true[:, :n], axis=-1),
                              ops.argmax(y_pred[:, :n], axis=-1)), "float32")


def fine_indices(emotions: list[str]) -> Any:
    """FER emotion names -> indices 0-6; a name outside FER-2013's seven is an error."""
    import numpy as np

    index = {e: i for i, e in enumerate(FER_EMOTIONS)}
    unknown = sorted({e for e in emotions if e not in index})
    if unknown:
        raise ValueError(f"--fine-labels needs FER-2013's seven emotions as folder names;"
                         f" found {', '.join(unknown)}")
    return np.array([index[e] for e in emotions], np.int64)


__all__ = ["FINE_HEAD", "N_FINE", "FineLabelLoss", "fine_indices", "head_accuracy",
           "label_head", "with_fine_head"]
