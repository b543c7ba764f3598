"""Evaluate any int8 model with its manifest on any labelled folder set, on the device path.

Faces go through device.preprocess and device.classify exactly as on the Pi, so the
numbers here are the numbers the daemon would produce on the same crops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.classify import Classifier
from device.manifest import Manifest, Preprocessing, load_manifest
from device.preprocess import face_tensor
from device.runtime import RuntimeName
from training.data import VALIDATION, DataError, Split, load_splits, split_for
from training.landmarks import aligned_tensors, found
from training.metrics import evaluate_probs, threshold_text

log = logging.getLogger(__name__)


def model_dir_of(model: Path) -> Path:
    """Accept the model directory, its manifest.json or its .tflite."""
    if model.is_dir():
        return model
    if model.suffix in (".json", ".tflite"):
        return model.parent
    raise FileNotFoundError(f"{model}: pass a model directory, its manifest.json or .tflite")


def classify_faces(clf: Classifier, images: list[np.ndarray],
                   landmarks: np.ndarray | None = None,
                   pre: Preprocessing | None = None) -> np.ndarray:
    """Already-cropped faces (any size) -> N x labels probabilities, the device's way;
    aligned on their landmarks when `pre` (default: the manifest's) aligns."""
    if landmarks is None:
        tensors = [face_tensor(im, clf.size) for im in images]
    else:
        tensors = aligned_tensors(images, landmarks, pre or clf.manifest.preprocessing)
    probs = [clf.probabilities(t) for t in tensors]
    return np.stack(probs) if probs else np.zeros((0, len(clf.labels)), np.float32)


def alignment_of(manifest: Manifest, align: str | None, eye_distance: float | None,
                 eye_y: float | None) -> Preprocessing:
    """The manifest's preprocessing with any alignment override from the command line."""
    upd: dict[str, Any] = {}
    if align is not None:
        upd["align"] = align
    if eye_distance is not None:
        upd["align_eye_distance"] = eye_distance
    if eye_y is not None:
        upd["align_eye_y"] = eye_y
    pre = manifest.preprocessing
    return Preprocessing.model_validate({**pre.model_dump(), **upd}) if upd else pre


def landmarks_for(images: list[np.ndarray], detector: Path | None,
                  cache: Path | None) -> np.ndarray:
    """YuNet's landmarks on each face (cached in `cache` when given)."""
    from device.detect import find_yunet, make_detector
    from training.landmarks import LandmarkCache

    store = LandmarkCache(cache)
    path = find_yunet(detector)
    if path is None:
        raise FileNotFoundError("aligning needs the YuNet model: pass --detector PATH")
    lms = store.get(images, make_detector(path, "yunet"))
    store.save()
    return lms


def evaluate_model(model: Path, data: Path, split: str | None = "test",
                   runtime: RuntimeName | None = None,
                   min_confidence: float | None = None,
                   flip_average: bool | None = None,
                   zoom_views: Sequence[float] | None = None, align: str | None = None,
                   eye_distance: float | None = None, eye_y: float | None = None,
                   detector: Path | None = None,
                   landmark_cache: Path | None = None, tilt: float = 0.0) -> dict[str, Any]:
    """`align` ("none"/"eyes") and the eye geometry, when given, override the manifest's
    (to measure what alignment does to a model); `tilt` rolls each face by a seeded random
    angle within +-tilt degrees first (a viewer's tilted head)."""
    mdir = model_dir_of(model)
    manifest = load_manifest(mdir / "manifest.json")
    clf = Classifier(manifest, mdir / manifest.model_file, prefer=runtime,
                     min_confidence=min_confidence, flip_average=flip_average,
                     zoom_views=zoom_views)
    chosen_split = fit_validation(data, split, manifest)
    splits, report = load_splits(data, drop_twins=False)
    if chosen_split is not None:
        chosen = chosen_split
    elif split and split in splits:
        chosen = splits[split]
    elif len(splits) == 1:
        split, chosen = next(iter(splits.items()))
    else:
        raise DataError(f"{data} has splits {', '.join(sorted(splits))}; choose one with"
                        " --split")
    pre = alignment_of(manifest, align, eye_distance, eye_y)
    images = tilted(chosen.images, tilt) if tilt else chosen.images
    lms = (landmarks_for(images, detector, landmark_cache) if pre.align == "eyes"
           else None)
    probs = classify_faces(clf, images, lms, pre)
    metrics = evaluate_probs(probs, chosen.emotions, manifest.labels, clf.thresholds)
    if lms is not None:
        metrics["align"] = {"align": pre.align, "eye_distance": pre.align_eye_distance,
                            "eye_y": pre.align_eye_y,
                            "landmarks_found": float(found(lms).mean())}
    metrics.update({"model": {"name": manifest.name, "version": manifest.version,
                              "sha256": manifest.model_sha256, "runtime": clf.runtime,
                              "flip_average": clf.flip_average,
                              "zoom_views": list(clf.zoom_views)},
                    "data": str(data), "split": split, "tilt_deg": tilt,
                    "skipped": {"unreadable": len(report.unreadable),
                                "near_blank": len(report.near_blank)}})
    return metrics


def tilted(images: list[np.ndarray], degrees: float, seed: int = 0) -> list[np.ndarray]:
    """Each face rolled about its centre by a uniform random angle in +-degrees (edges
    replicated, as the device's crop does)."""
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        h, w = im.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2),
                                    float(rng.uniform(-degrees, degrees)), 1.0)
        out.append(cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE))
    return out


def fit_validation(data: Path, split: str | None, manifest: Manifest) -> Split | None:
    """For split `validation`: the faces the model's own fit held out (its label set, seed
    and fraction from the manifest's training.options), unless the data set has a
    validation split of its own; None for any other split."""
    if split != VALIDATION:
        return None
    return split_for(data, VALIDATION, manifest.training.get("options") or {})


def views_text(model: dict[str, Any]) -> str:
    """'each face averaged with ...' for a manifest's views, or '' for one view."""
    zooms = [z for z in model.get("zoom_views", [1.0]) if z != 1.0]
    parts = [f"its central {z:.0%}" for z in zooms]
    if model.get("flip_average"):
        parts.append("the mirror image" + (" of each" if zooms else ""))
    return f"each face averaged with {' and '.join(parts)}" if parts else ""


def format_metrics(m: dict[str, Any]) -> str:
    """The human summary: the 2021 report's table plus the honest-count numbers."""
    views = views_text(m["model"])
    lines = [f"model {m['model']['name']} {m['model']['version']} on {m['data']}"
             f" [{m['split']}], {m['images']} images, runtime {m['model']['runtime']}"
             + (f", {views}" if views else "")]
    if "align" in m:
        al = m["align"]
        lines.append(f"aligned on the eyes (distance {al['eye_distance']}, height"
                     f" {al['eye_y']}); YuNet landmarks on {al['landmarks_found']:.1%} of faces,"
                     " the rest as cropped")
    if "happy_vs_sad" in m:
        hs = m["happy_vs_sad"]
        lines.append(f"happy-vs-sad accuracy: {hs['accuracy']:.2%} (n={hs['n']})")
    if "neutral_leak" in m:
        nl = m["neutral_leak"]
        lines.append(f"neutral leak at {threshold_text(m)}: {nl['rate']:.2%} "
                     f"(as happy {nl['as_happy']:.2%}, as sad {nl['as_sad']:.2%}, n={nl['n']})")
    if "coverage" in m:
        lines.append(f"accuracy (argmax, own labels): {m['accuracy_argmax']:.2%}; coverage at "
                     f"{threshold_text(m)}: {m['coverage']:.2%}, accuracy when covered: "
                     f"{m['accuracy_covered']:.2%}; ECE {m['ece']:.3f}")
        lines.append(confusion_table(m))
    for lab, c in m.get("counts", {}).items():
        lines.append(f"{lab} count on the whole mix: counted {c['counted']} vs true {c['true']}"
                     f" (error {c['count_error']:+.1%}, precision {c['precision']:.2%},"
                     f" recall {c['recall']:.2%})")
    return "\n".join(lines)


def confusion_table(m: dict[str, Any]) -> str:
    """Markdown confusion matrix with an UNCERTAIN column and F1 per class."""
    c = m["confusion"]
    head = "| true \\ predicted | " + " | ".join(c["columns"]) + " | F1 |"
    sep = "|---" * (len(c["columns"]) + 2) + "|"
    rows = []
    for name, row in zip(c["rows"], c["matrix"], strict=True):
        total = max(1, sum(row))
        cells = " | ".join(f"{v / total:.1%}" for v in row)
        rows.append(f"| {name} | {cells} | {m['f1'][name]:.3f} |")
    return "\n".join([head, sep, *rows])


def write_metrics(m: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(m, indent=1) + "\n")
