"""Camera-path evaluation: test faces placed in camera-sized frames, through the device.

FER's test faces are pre-cropped; on a Pi the model sees a face the detector found in a
640x480 frame, enlarged, JPEG-compressed and cropped with the manifest's framing. This
puts each test face into such a frame and runs the device's own detector, crop and
classifier, so framing mistakes (a wrong crop_scale) show up as lost accuracy. It also
scans crop scales, which is how the manifest's crop_scale is checked by measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.align import face_input
from device.classify import Classifier
from device.config import DetectorConfig
from device.detect import FaceDetector, make_detector
from device.manifest import load_manifest
from device.preprocess import to_gray
from training.data import load_splits
from training.evaluate import fit_validation, model_dir_of
from training.metrics import evaluate_probs

log = logging.getLogger(__name__)
FRAME_W, FRAME_H = 640, 480


def camera_frame(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 640x480 BGR frame holding the face at 96-200 px, lit and compressed at random."""
    side = int(rng.integers(96, 201))
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    bg = np.full((FRAME_H, FRAME_W), int(rng.integers(40, 200)), np.float32)
    bg += np.linspace(-30, 30, FRAME_W, dtype=np.float32)[None, :] * rng.choice([-1, 1])
    bg += rng.normal(0, 4, bg.shape).astype(np.float32)
    x = int(rng.integers(0, FRAME_W - side))
    y = int(rng.integers(0, FRAME_H - side))
    bg[y:y + side, x:x + side] = big
    gain = rng.uniform(0.75, 1.25)
    frame = np.clip(bg * gain + rng.normal(0, 2, bg.shape), 0, 255).astype(np.uint8)
    _, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
    decoded = cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(decoded if decoded is not None else frame, cv2.COLOR_GRAY2BGR)


def camera_faces(detector: FaceDetector, images: list[np.ndarray], idx: np.ndarray,
                 seeds: Sequence[int] = (0,)
                 ) -> Iterator[tuple[int, np.ndarray, tuple[int, ...], np.ndarray | None]]:
    """(index, gray frame, box, landmarks) of the detector's best face in each seeded
    camera frame of `idx` that holds one, for each seed in turn (a face appears once per
    seed whose frame it was found in). The frames depend only on the seed, so every
    model cropped from them sees the same faces."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for i in idx:
            frame = camera_frame(images[i], rng)
            dets = detector.detect(frame)
            if len(dets) == 0:
                continue
            best = int(np.argmax(dets.scores))
            lm = None if dets.landmarks is None else dets.landmarks[best]
            yield int(i), to_gray(frame), tuple(int(v) for v in dets.boxes[best]), lm


def camera_probs(clf: Classifier, detector: FaceDetector, images: list[np.ndarray],
                 emotions: list[str], idx: np.ndarray, seeds: Sequence[int] = (0,),
                 crop_scales: list[float] | None = None
                 ) -> tuple[dict[float, np.ndarray], list[str]]:
    """Each face of `idx` found in a camera frame of each seed (camera_faces) and cropped
    the daemon's way: probabilities per crop scale (default: the manifest's) and the
    emotions of the faces found."""
    pre0 = clf.manifest.preprocessing
    scales = crop_scales or [pre0.crop_scale]
    probs: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    found: list[str] = []
    for i, gray, box, lm in camera_faces(detector, images, idx, seeds):
        found.append(emotions[i])
        for s in scales:
            # The daemon's own crop (device/align.py): aligned when the manifest says so.
            pre = pre0.model_copy(update={"crop_scale": s})
            probs[s].append(clf.probabilities(face_input(gray, box, lm, pre)))
    n = len(clf.labels)
    return {s: np.stack(p) if p else np.zeros((0, n), np.float32)
            for s, p in probs.items()}, found


def device_detector(yunet: Path | None, input_width: int | None = None,
                    recheck_score: float | None = None) -> FaceDetector:
    """The daemon's default detector (DetectorConfig), optionally at another width."""
    dcfg = DetectorConfig()
    width = dcfg.input_width if input_width is None else input_width
    recheck = dcfg.recheck_score if recheck_score is None else recheck_score
    return make_detector(yunet, "auto", dcfg.score_threshold, dcfg.nms_threshold,
                         dcfg.min_face_px, dcfg.max_faces, width, recheck, dcfg.backend)


def evaluate_camera_path(model: Path, data: Path, yunet: Path | None,
                         crop_scales: list[float] | None = None, limit: int | None = None,
                         seed: int = 0, input_width: int | None = None,
                         split: str = "test", recheck_score: float | None = None,
                         frame_seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """input_width: the device's detector.input_width (None: its default). `split`
    "validation" is the model's own fit validation set: scan crop scales there when
    choosing one; "test" reports the chosen framing once. frame_seeds (default: `seed`):
    the faces of every seed's frames are pooled, and each seed is also scored alone."""
    mdir = model_dir_of(model)
    manifest = load_manifest(mdir / "manifest.json")
    clf = Classifier(manifest, mdir / manifest.model_file)
    dcfg = DetectorConfig()
    width = dcfg.input_width if input_width is None else input_width
    recheck = dcfg.recheck_score if recheck_score is None else recheck_score
    detector = device_detector(yunet, width, recheck)
    test = fit_validation(data, split, manifest)
    if test is None:
        splits, _ = load_splits(data, drop_twins=False)
        test = splits.get(split) or next(iter(splits.values()))
    idx = np.arange(len(test))
    if limit and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    scales = crop_scales or [manifest.preprocessing.crop_scale]
    seeds = list(frame_seeds or [seed])
    probs: dict[float, np.ndarray] = {}
    emotions: list[str] = []
    per_seed: list[dict[str, Any]] = []
    for sd in seeds:
        p, e = camera_probs(clf, detector, test.images, test.emotions, idx, [sd], scales)
        probs = {s: np.concatenate([probs[s], p[s]]) if s in probs else p[s] for s in scales}
        emotions += e
        per_seed.append({"detected": len(e),
                         **_figures(p[scales[0]], e, manifest.labels, clf.thresholds)})
    images = len(idx) * len(seeds)
    out: dict[str, Any] = {"images": images, "detected": len(emotions), "split": split,
                           "frame_seeds": seeds,
                           "detection_rate": len(emotions) / max(1, images),
                           "detector": detector.describe(), "input_width": width,
                           "recheck_score": recheck, "rechecks": detector.rechecks,
                           "detect_width": round(FRAME_W * detector.shrink_factor(FRAME_W)),
                           "by_crop_scale": {}}
    for s in scales:
        out["by_crop_scale"][f"{s:g}"] = _figures(probs[s], emotions, manifest.labels,
                                                  clf.thresholds)
    if len(seeds) > 1:
        out["by_frame_seed"] = {str(sd): f for sd, f in zip(seeds, per_seed, strict=True)}
    log.info("camera path: %d of %d frames' faces detected (%s)", len(emotions), images,
             detector.describe())
    return out


def _figures(probs: np.ndarray, emotions: list[str], labels: list[str],
             thresholds: Any) -> dict[str, Any]:
    m = evaluate_probs(probs, emotions, labels, thresholds)
    return {k: m[k] for k in ("happy_vs_sad", "neutral_leak", "accuracy_argmax", "coverage",
                              "accuracy_covered") if k in m}


def format_camera(m: dict[str, Any]) -> str:
    shrink = (f", frames shrunk to {m['detect_width']} px wide for detection"
              if m.get("detect_width", FRAME_W) < FRAME_W else "")
    if shrink and m.get("recheck_score"):
        shrink += (f", weak faces (score >= {m['recheck_score']:g}) rechecked at full "
                   f"resolution ({m.get('rechecks', 0)} regions)")
    lines = [f"camera path [{m.get('split', 'test')}]: {m['detected']}/{m['images']} faces"
             f" detected ({m['detection_rate']:.1%}) by {m['detector']}{shrink}",
             "| crop scale | happy-vs-sad | neutral leak | own-label acc. | coverage |",
             "|---|---|---|---|---|"]
    for s, r in m["by_crop_scale"].items():
        lines.append(f"| {s} | {r['happy_vs_sad']['accuracy']:.2%} | "
                     f"{r['neutral_leak']['rate']:.2%} | {r['accuracy_argmax']:.2%} | "
                     f"{r['coverage']:.2%} |")
    if m.get("by_frame_seed"):
        lines.append(f"(pooled over frame seeds {', '.join(m['by_frame_seed'])}; alone, at"
                     " the first crop scale:")
        lines += [f"  seed {sd}: happy-vs-sad {r['happy_vs_sad']['accuracy']:.2%}, neutral leak"
                  f" {r['neutral_leak']['rate']:.2%}, own-label acc. {r['accuracy_argmax']:.2%}"
                  for sd, r in m["by_frame_seed"].items()]
        lines[-1] += ")"
    return "\n".join(lines)
