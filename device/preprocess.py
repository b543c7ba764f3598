"""The one preprocessing definition shared by training and the device.

Training imports this module (never the other way round), so a face that reaches the
model on the Pi went through exactly the operations the model saw while it learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grayscale uint8 image -> 2-D uint8 grayscale."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def square_around(box: Sequence[float], crop_scale: float, shift_y: float = 0.0) -> Box:
    """A square of side max(w, h) * crop_scale centred on the box.

    shift_y moves the centre by that fraction of the side (positive is down) because
    detector boxes and FER's forehead-to-chin framing need not share a centre.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * crop_scale
    cx = x + w / 2.0
    cy = y + h / 2.0 + shift_y * side
    x0 = round(cx - side / 2.0)
    y0 = round(cy - side / 2.0)
    s = max(1, round(side))
    return x0, y0, s, s


def crop_square(gray: np.ndarray, box: Sequence[float], crop_scale: float,
                shift_y: float = 0.0) -> np.ndarray:
    """Crop the framing square; parts outside the frame are filled by edge replication.

    Replication rather than black keeps a face at the border from looking like a dark
    face to a model that never saw black bars.
    """
    x0, y0, s, _ = square_around(box, crop_scale, shift_y)
    h, w = gray.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + s - h), max(0, x0 + s - w)
    inner = gray[max(0, y0):min(h, y0 + s), max(0, x0):min(w, x0 + s)]
    if inner.size == 0:
        raise ValueError(f"face box {tuple(box)} lies outside the {w}x{h} frame")
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return inner


def resize_face(face: np.ndarray, size: int) -> np.ndarray:
    """Square grayscale crop -> size x size uint8.

    INTER_AREA when shrinking avoids the aliasing a Pi camera's large faces would
    otherwise bring; INTER_LINEAR when enlarging FER's 48 px faces.
    """
    if face.shape[0] == size and face.shape[1] == size:
        return face
    shrinking = face.shape[0] > size or face.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interp)


def zoom_center(face: np.ndarray, factor: float) -> np.ndarray:
    """The central `factor` of a square face, resized back to its own size (a test-time
    view: a slightly tighter framing of the same face). 1.0 returns the face unchanged."""
    if factor >= 1.0:
        return face
    n = face.shape[0]
    m = max(1, round(n * factor))
    o = (n - m) // 2
    inner = np.ascontiguousarray(face[o:o + m, o:o + m])
    out = cv2.resize(inner, (face.shape[1], n), interpolation=cv2.INTER_LINEAR)
    return out.reshape(face.shape)


def face_views(face: np.ndarray, zoom_views: Sequence[float],
               flip: bool) -> list[np.ndarray]:
    """The views of one face whose logits the model averages: each zoom, then (when `flip`)
    each of those mirrored. Training and the device both call this, so they average the
    same views in the same order."""
    views = [zoom_center(face, z) for z in zoom_views]
    if flip:
        views += [v[:, ::-1] for v in views]
    return views


def to_unit(face: np.ndarray) -> np.ndarray:
    """uint8 HxW -> float32 HxWx1 in [0, 1]: the float model's input."""
    return (face.astype(np.float32) / 255.0)[:, :, None]


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float tensor -> the model's integer input, using the model's own scale/zero point."""
    if dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(np.dtype(dtype))
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if q.dtype == np.float32:
        return q
    return (q.astype(np.float32) - zero_point) * scale


def face_tensor(gray_face: np.ndarray, size: int) -> np.ndarray:
    """An already-cropped face (any size, gray or colour) -> float HxWx1 model input."""
    return to_unit(resize_face(to_gray(gray_face), size))


def frame_face_tensor(frame: np.ndarray, box: Sequence[float], size: int,
                      crop_scale: float, shift_y: float = 0.0) -> np.ndarray:
    """A detected face in a full frame -> float HxWx1 model input."""
    return face_tensor(crop_square(to_gray(frame), box, crop_scale, shift_y), size)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
