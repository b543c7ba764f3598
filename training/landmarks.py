"""YuNet landmarks on FER faces, cached, and the aligned training arrays built from them.

The device aligns a camera face on the eyes YuNet finds (device/align.py); training finds
the same landmarks on each FER face through the device's own detector (which upscales and
pads a 48 px face itself) and aligns with the same function. Where YuNet finds no face the
plain crop is used, as on the device. Landmarks are cached per image (keyed by its pixels)
so a resumed or repeated run does not detect again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.align import align_face, eye_geometry
from device.detect import FaceDetector
from device.manifest import Preprocessing
from device.preprocess import face_tensor, resize_face, to_gray
from training.atomic import replacing

log = logging.getLogger(__name__)

SPURIOUS = 0.4  # a detection smaller than this fraction of the face image is not the face


def _key(gray: np.ndarray) -> str:
    return hashlib.sha1(gray.tobytes() + bytes(str(gray.shape), "ascii")).hexdigest()


def face_landmarks(gray: np.ndarray, detector: FaceDetector) -> np.ndarray | None:
    """The five landmarks of the face filling `gray` (a pre-cropped face), or None."""
    dets = detector.detect(gray)
    if not len(dets) or dets.landmarks is None:
        return None
    if max(int(dets.boxes[0, 2]), int(dets.boxes[0, 3])) < SPURIOUS * max(gray.shape):
        return None
    return dets.landmarks[0]


class LandmarkCache:
    """image pixels -> (5, 2) landmarks or NaN (no face), kept in one .npz file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.table: dict[str, np.ndarray] = {}
        if path is not None and path.exists():
            with np.load(path) as z:
                self.table = dict(zip(z["keys"].tolist(), z["points"], strict=True))
        self._dirty = False

    def get(self, images: Sequence[np.ndarray], detector: FaceDetector | None
            ) -> np.ndarray:
        """N x 5 x 2 landmarks, NaN where YuNet found no face; detects only the images the
        cache lacks (and needs `detector` for those)."""
        out = np.full((len(images), 5, 2), np.nan, np.float32)
        for i, im in enumerate(images):
            gray = to_gray(im)
            k = _key(gray)
            if k not in self.table:
                if detector is None:
                    raise ValueError("landmarks missing from the cache and no detector given")
                lm = face_landmarks(gray, detector)
                self.table[k] = (np.full((5, 2), np.nan, np.float32) if lm is None
                                 else lm.astype(np.float32))
                self._dirty = True
            out[i] = self.table[k]
        return out

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        keys = np.array(list(self.table), dtype="U40")
        points = np.stack(list(self.table.values())) if self.table else np.zeros((0, 5, 2))
        with replacing(self.path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, keys=keys, points=points)
        self._dirty = False


def found(landmarks: np.ndarray) -> np.ndarray:
    """Per face: did YuNet give landmarks."""
    return np.isfinite(landmarks).all(axis=(1, 2))


def measure_geometry(images: Sequence[np.ndarray], landmarks: np.ndarray) -> dict[str, Any]:
    """Median eye distance and height over the faces with landmarks: where a registered FER
    face has its eyes, so aligned faces keep FER's framing (measured, not guessed)."""
    ok = found(landmarks)
    if not ok.any():
        raise RuntimeError("YuNet found no landmarks in the sample; cannot align")
    geo = np.array([eye_geometry(lm, float(max(im.shape[:2])))
                    for im, lm, k in zip(images, landmarks, ok, strict=True) if k])
    return {"align_eye_distance": round(float(np.median(geo[:, 0])), 3),
            "align_eye_y": round(float(np.median(geo[:, 1])), 3),
            "found": int(ok.sum()), "faces": len(images),
            "found_rate": float(ok.mean())}


def aligned_crop(image: np.ndarray, landmarks: np.ndarray | None,
                 pre: Preprocessing) -> np.ndarray:
    """A pre-cropped face as the device would frame it: aligned on its eyes when the
    manifest aligns and landmarks exist, else the face as cropped."""
    gray = to_gray(image)
    if pre.align == "eyes" and landmarks is not None and np.isfinite(landmarks).all():
        return align_face(gray, landmarks, pre.align_eye_distance, pre.align_eye_y)
    return gray


def to_aligned_array(images: Sequence[np.ndarray], landmarks: np.ndarray,
                     pre: Preprocessing) -> np.ndarray:
    """Faces -> N x size x size uint8, aligned where landmarks exist (training arrays)."""
    if not len(images):
        return np.zeros((0, pre.size, pre.size), np.uint8)
    return np.stack([resize_face(aligned_crop(im, lm, pre), pre.size)
                     for im, lm in zip(images, landmarks, strict=True)])


def aligned_tensors(images: Sequence[np.ndarray], landmarks: np.ndarray | None,
                    pre: Preprocessing) -> list[np.ndarray]:
    """Faces -> float model inputs, the device's way (evaluation)."""
    if landmarks is None:
        return [face_tensor(im, pre.size) for im in images]
    return [face_tensor(aligned_crop(im, lm, pre), pre.size)
            for im, lm in zip(images, landmarks, strict=True)]
