"""Batch augmentation that bridges FER's 48 px web crops to what a Pi camera sees.

A Pi camera face is larger, sharper, differently lit and slightly rotated relative to a
FER crop, and the detector frames it a little differently each frame. Every op here
works on a whole float batch in [0, 1] inside the tf.data graph, so it costs little
next to the training step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    rotate_deg: float = 15.0
    zoom: tuple[float, float] = (0.85, 1.2)  # >1 zooms in (tighter framing)
    shift: float = 0.08  # fraction of the side
    brightness: float = 0.2
    contrast: tuple[float, float] = (0.6, 1.4)
    gamma: tuple[float, float] = (0.67, 1.5)
    blur_sharpen: tuple[float, float] = (-1.0, 0.8)  # <0 sharpens, >0 blurs
    noise_std: float = 0.04
    downscale_p: float = 0.3
    downscale_min: int = 20


def _gaussian_kernel(tf: Any, sigma: float = 1.0, radius: int = 2) -> Any:
    xs = tf.range(-radius, radius + 1, dtype=tf.float32)
    g = tf.exp(-(xs**2) / (2 * sigma**2))
    g = g / tf.reduce_sum(g)
    return tf.reshape(tf.tensordot(g, g, axes=0), (2 * radius + 1, 2 * radius + 1, 1, 1))


def augment_batch(x: Any, cfg: AugmentConfig, seed: Any = None) -> Any:
    """x: float32 [B, S, S, 1] in [0, 1] -> augmented batch, same shape and range."""
    import tensorflow as tf

    del seed  # tf.random's global seed (set by fit) keeps runs reproducible
    b = tf.shape(x)[0]
    s = tf.cast(tf.shape(x)[1], tf.float32)

    if cfg.flip:
        flip = tf.random.uniform((b, 1, 1, 1)) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)

    # Rotation, zoom and shift as one projective transform per image (output->input map).
    ang = tf.random.uniform((b,), -1.0, 1.0) * (cfg.rotate_deg * math.pi / 180.0)
    zoom = tf.exp(tf.random.uniform((b,), math.log(cfg.zoom[0]), math.log(cfg.zoom[1])))
    tx = tf.random.uniform((b,), -cfg.shift, cfg.shift) * s
    ty = tf.random.uniform((b,), -cfg.shift, cfg.shift) * s
    c = (s - 1.0) / 2.0
    cos, sin = tf.cos(ang) / zoom, tf.sin(ang) / zoom
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    # Photometric: brightness, contrast, gamma.
    x = x + tf.random.uniform((b, 1, 1, 1), -cfg.brightness, cfg.brightness)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * tf.random.uniform((b, 1, 1, 1), *cfg.contrast) + mean
    x = tf.clip_by_value(x, 0.0, 1.0)
    g = tf.exp(tf.random.uniform((b, 1, 1, 1), math.log(cfg.gamma[0]), math.log(cfg.gamma[1])))
    x = tf.pow(x + 1e-6, g)

    # Blur or unsharp-mask: Pi faces are sharper than FER's upscaled 48 px crops.
    blurred = tf.nn.depthwise_conv2d(
        tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT"),
        _gaussian_kernel(tf), strides=[1, 1, 1, 1], padding="VALID")
    amount = tf.random.uniform((b, 1, 1, 1), *cfg.blur_sharpen)
    x = x + amount * (blurred - x)

    # Down-up scaling: a small or distant face in a big frame.
    size = tf.shape(x)[1:3]
    small = tf.random.uniform((), cfg.downscale_min, tf.shape(x)[1] + 1, dtype=tf.int32)
    du = tf.image.resize(tf.image.resize(x, tf.stack([small, small]), method="area"), size,
                         method="bilinear")
    pick = tf.random.uniform((b, 1, 1, 1)) < cfg.downscale_p
    x = tf.where(pick, du, x)

    x = x + tf.random.normal(tf.shape(x)) * tf.random.uniform((b, 1, 1, 1), 0.0, cfg.noise_std)
    return tf.clip_by_value(x, 0.0, 1.0)
