"""Training faces as the device sees them: placed in camera frames, found and cropped.

Every width-2 model leaks more neutral faces through the camera path than on FER's own
crops, more than the shipped model does (README, issue 13). `fit --camera-copies F` adds,
for a seeded fraction F of the training faces, a second copy made the way the camera-path
evaluation makes its faces (training/camera_eval.py: a 640x480 frame, the device's
detector, the device's crop with the framing measured on validation), with the same label.
The copies use a frame seed of their own, and only training faces, so the evaluation's
validation frames stay unseen.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device.align import face_crop
from device.manifest import Preprocessing
from device.preprocess import resize_face
from training.atomic import replacing

log = logging.getLogger(__name__)
COPY_SEED_OFFSET = 7919  # frame seed = fit seed + this: never the evaluation's 0, 1, 2


def camera_copies(images: list[np.ndarray], fraction: float, seed: int,
                  pre: Preprocessing, yunet: Path
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(indices into `images`, N x size x size uint8 copies) of the seeded `fraction` of
    faces whose camera frame held a face the device's detector found."""
    from training.camera_eval import camera_faces, device_detector

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--camera-copies {fraction}: give a fraction in (0, 1]")
    rng = np.random.default_rng(seed)
    n = round(len(images) * fraction)
    pick = np.sort(rng.choice(len(images), n, replace=False))
    t0 = time.monotonic()
    idx: list[int] = []
    out: list[np.ndarray] = []
    for i, gray, box, lm in camera_faces(device_detector(yunet), images, pick,
                                         (seed + COPY_SEED_OFFSET,)):
        idx.append(i)
        out.append(resize_face(face_crop(gray, box, lm, pre), pre.size))
    log.info("camera copies: %d of %d picked faces found in %.0f s", len(idx), n,
             time.monotonic() - t0)
    copies = np.stack(out) if out else np.zeros((0, pre.size, pre.size), np.uint8)
    return np.asarray(idx, np.int64), copies


def copies_key(images: list[np.ndarray], fraction: float, seed: int,
               pre: Preprocessing) -> dict[str, Any]:
    """What camera copies depend on: the options, and the training faces themselves (by
    digest, in order, since the copies are filed by position), so a cache shared by runs
    never hands one data set's copies to another."""
    digest = hashlib.sha256()
    for im in images:
        digest.update(repr(im.shape).encode())
        digest.update(np.ascontiguousarray(im).tobytes())
    return {"fraction": fraction, "seed": seed, "faces": len(images),
            "data": digest.hexdigest(), "preprocessing": pre.model_dump_json()}


def cached_copies(cache_dir: Path, key: dict[str, Any],
                  make: Callable[[], tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The copies stored in `cache_dir` under `key`; else made and stored there. A resumed
    run does not detect every face again, and runs given one `--copies-cache` directory
    share copies made with the same key (each key its own file, so none evicts another)."""
    want = repr(sorted(key.items()))
    name = hashlib.sha256(want.encode()).hexdigest()[:16]
    cache = cache_dir / f"camera_copies-{name}.npz"
    if cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == want:
                return z["idx"], z["copies"]
        log.info("camera copies: %s holds another key; making them again", cache)
    idx, copies = make()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A file object, so numpy adds no suffix of its own to the temporary name.
    with replacing(cache) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, key=np.array(want), idx=idx, copies=copies)
    return idx, copies
