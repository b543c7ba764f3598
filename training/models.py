"""Classifier architectures, all trained from scratch (no ImageNet weights here).

The input is a size x size x 1 float face in [0, 1] (device.preprocess.to_unit); the
output is logits, so the device can apply the calibrated temperature.
"""

from __future__ import annotations

from typing import Any

ARCHS = ("minixception", "mobilenetv2")
# Keras' 0.99 (and MobileNetV2's 0.999) leave moving statistics stale after a short
# run or a small data set: validation then sits at chance while training accuracy climbs.
BN_MOMENTUM = 0.9


def _keras() -> Any:
    import keras

    return keras


def build_minixception(size: int, n_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128),
                       stem: int = 8, dropout: float = 0.2) -> Any:
    """Mini-Xception (Arriaga et al. 2017): depthwise-separable residual blocks.

    The strongest small peer measured on real photographs; ~60k parameters at the
    default widths. Widths are an option because int8 size and latency leave headroom.
    """
    keras = _keras()
    layers = keras.layers
    reg = keras.regularizers.l2(1e-4)
    inp = keras.Input((size, size, 1), name="face")
    x = layers.Rescaling(2.0, offset=-1.0)(inp)
    for _ in range(2):
        x = layers.Conv2D(stem, 3, use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
    for w in widths:
        # Average-pool then 1x1 (ResNet-D shortcut): TF 2.21's oneDNN backprop of a
        # strided 1x1 convolution corrupts the heap on this CPU.
        res = layers.AveragePooling2D(2, padding="same")(x)
        res = layers.Conv2D(w, 1, use_bias=False)(res)
        res = layers.BatchNormalization(momentum=BN_MOMENTUM)(res)
        x = layers.SeparableConv2D(w, 3, padding="same", use_bias=False,
                                   depthwise_regularizer=reg, pointwise_regularizer=reg)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
        x = layers.SeparableConv2D(w, 3, padding="same", use_bias=False,
                                   depthwise_regularizer=reg, pointwise_regularizer=reg)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, res])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="minixception")


def build_mobilenetv2(size: int, n_classes: int, alpha: float = 0.35,
                      dropout: float = 0.2) -> Any:
    """The 2021 report's baseline: MobileNetV2 alpha 0.35, Dense(10), dropout 0.2.

    From scratch the report's Dense(10, relu) died (all units dead), so the head uses
    LeakyReLU; BatchNorm momentum 0.999 leaves statistics stale after short training,
    so it is lowered.
    """
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((size, size, 1), name="face")
    x = layers.Rescaling(2.0, offset=-1.0)(inp)
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 1), alpha=alpha, include_top=False, weights=None)
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(10)(x)
    x = layers.LeakyReLU(negative_slope=0.1)(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="mobilenetv2_035")


def build(arch: str, size: int, n_classes: int, width: float = 1.0) -> Any:
    if arch == "minixception":
        widths = tuple(max(8, round(w * width)) for w in (16, 32, 64, 128))
        return build_minixception(size, n_classes, widths=widths, stem=max(8, round(8 * width)))
    if arch == "mobilenetv2":
        return build_mobilenetv2(size, n_classes, alpha=0.35 * width)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
