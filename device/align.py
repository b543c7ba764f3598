"""Face alignment from the detector's landmarks: eyes level, a fixed inter-ocular distance.

FER-2013's faces are registered (upright, similar eye positions); a viewer at a sign tilts
the head and the detector box wanders. Rotating the face so the eyes are level and scaling
it so they sit a fixed distance apart makes a camera face look like a training face.
Training imports this module, so both align with the same arithmetic (tests prove parity).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from device.manifest import Preprocessing
from device.preprocess import crop_square, face_tensor

RIGHT_EYE, LEFT_EYE = 0, 1  # YuNet's landmark order (the subject's right eye first)
MIN_SIDE = 8


def eye_geometry(landmarks: np.ndarray, side: float) -> tuple[float, float]:
    """(eye distance, eyes' midpoint height) as fractions of a face square of `side` pixels
    whose top-left corner is the origin: how a registered face places its eyes."""
    re, le = landmarks[RIGHT_EYE].astype(np.float64), landmarks[LEFT_EYE].astype(np.float64)
    dist = float(np.hypot(*(le - re)))
    mid_y = float((re[1] + le[1]) / 2.0)
    return dist / side, (mid_y + 0.5) / side


def align_matrix(landmarks: np.ndarray, eye_distance: float, eye_y: float
                 ) -> tuple[np.ndarray, int]:
    """The 2x3 affine map (rotation and shift, no scaling) from frame pixels to an aligned
    square, and that square's side. The side is set by the eye distance, so the face keeps
    its own resolution and `resize_face` then scales it exactly as an unaligned crop."""
    re, le = landmarks[RIGHT_EYE].astype(np.float64), landmarks[LEFT_EYE].astype(np.float64)
    dx, dy = le - re
    dist = max(float(np.hypot(dx, dy)), 1e-6)
    side = max(MIN_SIDE, round(dist / eye_distance))
    c, s = dx / dist, dy / dist  # cos and sin of the eye line's angle
    cx, cy = (re + le) / 2.0
    tx, ty = (side - 1) / 2.0, eye_y * side - 0.5
    # Rotate by minus the eye line's angle about the eyes' midpoint, then move that point
    # to its place in the square.
    m = np.array([[c, s, tx - (c * cx + s * cy)],
                  [-s, c, ty - (-s * cx + c * cy)]], np.float64)
    return m, side


def align_face(gray: np.ndarray, landmarks: np.ndarray, eye_distance: float,
               eye_y: float) -> np.ndarray:
    """The aligned face square (uint8) from a grayscale frame and one face's five
    landmarks; outside the frame is filled by edge replication, as crop_square does."""
    m, side = align_matrix(landmarks, eye_distance, eye_y)
    return cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def face_crop(gray: np.ndarray, box: Sequence[float], landmarks: np.ndarray | None,
              pre: Preprocessing) -> np.ndarray:
    """The face square the manifest asks for: aligned on the eyes when it says so and the
    detector gave landmarks, else the crop_scale framing of the box."""
    if pre.align == "eyes" and landmarks is not None:
        return align_face(gray, landmarks, pre.align_eye_distance, pre.align_eye_y)
    return crop_square(gray, box, pre.crop_scale, pre.crop_shift_y)


def face_input(gray: np.ndarray, box: Sequence[float], landmarks: np.ndarray | None,
               pre: Preprocessing) -> np.ndarray:
    """A detected face in a grayscale frame -> float HxWx1 model input."""
    return face_tensor(face_crop(gray, box, landmarks, pre), pre.size)
