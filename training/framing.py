"""Measure the crop framing that makes a detector box look like a training face.

FER faces are cropped tight (forehead to chin). Running YuNet on FER faces themselves
gives the box it would draw around such a face; the training image's side divided by
that box's longer side is the crop_scale the device must use, and the offset between
their centres is crop_shift_y. Both go into the manifest, so they are measured, not
guessed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

UPSCALE = 160  # FER's 48 px faces are below YuNet's smallest anchors
CANVAS = 320


def measure_framing(images: list[np.ndarray], yunet: Path, limit: int = 1500,
                    score_threshold: float = 0.6) -> dict[str, Any]:
    """Median crop_scale and crop_shift_y over the faces YuNet finds."""
    det = cv2.FaceDetectorYN.create(str(yunet), "", (CANVAS, CANVAS), score_threshold,
                                    0.3, 50)
    scales: list[float] = []
    shifts: list[float] = []
    pad = (CANVAS - UPSCALE) // 2
    for gray in images[:limit]:
        big = cv2.resize(gray, (UPSCALE, UPSCALE), interpolation=cv2.INTER_LINEAR)
        canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=128)
        _, faces = det.detect(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
        if faces is None or len(faces) == 0:
            continue
        _x, y, w, h = faces[int(np.argmax(faces[:, -1])), :4]
        side = max(w, h)
        if side < UPSCALE * 0.4:  # a spurious small detection, not the face
            continue
        scales.append(UPSCALE / side)
        shifts.append(((pad + UPSCALE / 2) - (y + h / 2)) / UPSCALE)
    n = min(limit, len(images))
    if not scales:
        raise RuntimeError("YuNet found no face in the sample; cannot measure framing")
    result = {"crop_scale": round(float(np.median(scales)), 3),
              "crop_shift_y": round(float(np.median(shifts)), 3),
              "crop_scale_iqr": [round(float(v), 3) for v in np.percentile(scales, [25, 75])],
              "detected": len(scales), "sampled": n, "detector": yunet.name}
    log.info("framing measured on %d/%d faces: %s", len(scales), n, result)
    return result
