"""`moodcam-train fit`: data -> training -> calibration -> int8 -> evaluation -> bundle."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle import load_signing_key, write_bundle
from device.classify import Classifier
from device.manifest import load_manifest, write_manifest
from device.preprocess import softmax
from training.data import FER_EMOTIONS, to_array
from training.evaluate import classify_faces, views_text, write_metrics
from training.export import build_manifest, convert_int8, float_logits, write_golden
from training.fit import (
    ZOOM_CANDIDATES,
    FitOptions,
    Prepared,
    prepare,
    refuse_past_deadline,
    train,
)
from training.framing import measure_framing
from training.landmarks import to_aligned_array
from training.lineage import lineage
from training.metrics import count_thresholds, ece, evaluate_probs, fit_temperature
from training.report import (
    plot_confusion,
    plot_history,
    plot_reliability,
    write_model_card,
    write_report,
)
from training.runstate import options_json

log = logging.getLogger(__name__)

DEFAULT_YUNET = ("../shared/models/yunet/face_detection_yunet_2023mar.onnx",
                 "/var/lib/moodcam/detector/face_detection_yunet_2023mar.onnx")


def find_yunet(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit if explicit.exists() else None
    for cand in DEFAULT_YUNET:
        p = Path(cand)
        if p.exists():
            return p
    return None


def run_fit(opts: FitOptions, detector: Path | None = None) -> dict[str, Any]:
    opts.out.mkdir(parents=True, exist_ok=True)
    refuse_past_deadline(opts)  # before minutes of data loading
    prep = prepare(opts, detector)
    log.info("data: %s", json.dumps(prep.report.summary()))
    log.info("train %d, validation %d, test %d images; labels %s", len(prep.y_train),
             len(prep.y_val), len(prep.test_images), ",".join(prep.label_set))
    model, state = train(opts, prep)
    labels = list(prep.label_set)

    zoom_views, val_logits, view_acc = choose_views(model, prep, opts)
    temperature = fit_temperature(val_logits, prep.y_val)
    p_before, p_after = softmax(val_logits), softmax(val_logits, temperature)
    ece_before, ece_after = ece(p_before, prep.y_val), ece(p_after, prep.y_val)
    log.info("temperature %.3f: validation ECE %.3f -> %.3f", temperature, ece_before,
             ece_after)
    label_thresholds = (count_thresholds(p_after, prep.y_val, labels)
                        if opts.count_thresholds else {})
    log.info("per-label thresholds (validation counts): %s", label_thresholds or "none")

    framing = _framing(opts, prep, detector)
    rng = np.random.default_rng(opts.seed)
    rep = prep.x_train[rng.choice(len(prep.x_train), min(400, len(prep.x_train)),
                                  replace=False)]
    tflite = opts.out / "model.tflite"
    tflite.write_bytes(convert_int8(model, rep))
    training_info = {"options": state.get("options", {}), "epochs": state["epoch"],
                     "best_epoch": state.get("best_epoch"), "wall_s": state.get("wall_s"),
                     "framing": framing, "data": prep.report.summary(),
                     "align": prep.extra.get("align"), "members": state.get("members"),
                     "train_images": len(prep.y_train), "val_images": len(prep.y_val)}
    build_manifest(opts.out, name=opts.name, version=opts.version, labels=prep.label_set,
                   size=opts.size, crop_scale=framing["crop_scale"],
                   crop_shift_y=framing["crop_shift_y"], temperature=temperature,
                   min_confidence=opts.min_confidence, label_thresholds=label_thresholds,
                   flip_average=opts.flip_average,
                   zoom_views=zoom_views, metrics={}, training=training_info,
                   align=prep.extra.get("align"))
    if opts.thresholds_against is not None:
        _thresholds_against(opts, prep, labels, detector)
    clf = Classifier.from_dir(opts.out)
    test_lms = prep.extra.get("test_landmarks")
    pre = clf.manifest.preprocessing
    test_faces = (to_array(prep.test_images, opts.size) if test_lms is None
                  else to_aligned_array(prep.test_images, test_lms, pre))
    write_golden(opts.out, _golden_faces(prep, test_faces))

    # Without a test split, the held-out validation faces stand in (and the report says so).
    split = "test" if prep.test_images else "validation"
    eval_images = prep.test_images or list(prep.x_val)
    eval_emotions = prep.test_emotions or [labels[i] for i in prep.y_val]
    eval_faces = test_faces if len(test_faces) else prep.x_val
    probs = classify_faces(clf, eval_images, test_lms if prep.test_images else None)
    metrics = evaluate_probs(probs, eval_emotions, labels, clf.thresholds)
    metrics["split"] = split
    float_pred = float_logits(model, eval_faces, flip_average=opts.flip_average,
                              zoom_views=zoom_views).argmax(axis=1)
    agreement = float(np.mean(float_pred == probs.argmax(axis=1)))
    metrics["int8_float_agreement"] = agreement
    metrics["validation"] = {"temperature": temperature, "ece_before": ece_before,
                             "ece_after": ece_after, "view_accuracy": view_acc}
    manifest = load_manifest(opts.out / "manifest.json")
    manifest = manifest.model_copy(update={"metrics": _headline(metrics)})
    write_manifest(manifest, opts.out / "manifest.json")
    write_metrics(metrics, opts.out / "metrics.json")

    seed = load_signing_key(opts.key) if opts.key else None
    bundle = write_bundle(opts.out / f"{manifest.name}-{manifest.version}.moodcam.tar",
                          opts.out, seed)

    plot_history(state["history"], opts.out / "training_curves.png")
    plot_confusion(metrics, opts.out / "confusion.png",
                   f"{manifest.name} {manifest.version} (int8, {split})")
    plot_reliability({"before scaling": (p_before, prep.y_val),
                      f"T={temperature:.2f}": (p_after, prep.y_val)},
                     opts.out / "reliability.png")
    ctx = {"name": manifest.name, "version": manifest.version, "metrics": metrics,
           "command": "moodcam-train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
           "wall_s": state.get("wall_s") or 0.0, "cpus": os.cpu_count(),
           "temperature": temperature, "ece_before": ece_before, "ece_after": ece_after,
           "agreement": agreement, "model_bytes": manifest.model_bytes,
           "sha256": manifest.model_sha256, "crop_scale": framing["crop_scale"],
           "crop_shift_y": framing["crop_shift_y"], "framing_source": framing["source"],
           "data_report": prep.report.summary(), "labels": labels, "arch": opts.arch,
           "width": opts.width, "size": opts.size, "val_fraction": opts.val_fraction,
           "model_ref": "models/", "epochs": state["epoch"], "planned_epochs": opts.epochs,
           "best_epoch": state.get("best_epoch"), "align": prep.extra.get("align"),
           "members": state.get("members"),
           "lineage": lineage(options_json(opts), str(opts.data)),
           "thresholds_against": manifest.training.get("thresholds_against"),
           "views": views_text({"flip_average": opts.flip_average,
                                "zoom_views": list(zoom_views)})}
    write_report(opts.out, ctx)
    write_model_card(opts.out, ctx)
    log.info("wrote %s", bundle)
    return metrics


def choose_views(model: Any, prep: Prepared, opts: FitOptions
                 ) -> tuple[tuple[float, ...], np.ndarray, dict[str, float]]:
    """The views the device averages per face, picked by validation accuracy (ties: fewer
    views, each costs an invoke) unless `--zoom-views` fixed them. A model trained without
    zoom augmentation can do worse on a zoomed view, so this is measured, not assumed."""
    candidates = [opts.zoom_views] if opts.zoom_views else list(ZOOM_CANDIDATES)
    logits = {zv: float_logits(model, prep.x_val, flip_average=opts.flip_average,
                               zoom_views=zv) for zv in candidates}
    acc = {zv: float(np.mean(lg.argmax(axis=1) == prep.y_val)) for zv, lg in logits.items()}
    best = max(candidates, key=lambda zv: (acc[zv], -len(zv)))
    shown = {",".join(f"{z:g}" for z in zv): a for zv, a in acc.items()}
    log.info("views (zoom factors) by validation accuracy: %s -> %s", shown, best)
    return best, logits[best], shown


def _thresholds_against(opts: FitOptions, prep: Any, labels: list[str],
                        detector: Path | None) -> None:
    from training.operating import apply_to_run

    assert opts.thresholds_against is not None
    emotions = [labels[i] for i in prep.y_val]
    found = apply_to_run(opts.out, opts.thresholds_against, prep.val_images, emotions,
                         find_yunet(detector))
    if not found["qualifies"]:
        log.warning("--thresholds-against %s: no happy/sad thresholds leave every count"
                    " figure at least as good on validation (nearest: %s); count-matched"
                    " ones kept", opts.thresholds_against, found.get("worst"))
    else:
        log.info("thresholds no worse than %s on validation: happy %.2f, sad %.2f (%s)",
                 opts.thresholds_against, found["happy"], found["sad"], found["scores"])


def _framing(opts: FitOptions, prep: Any, detector: Path | None) -> dict[str, Any]:
    if opts.crop_scale is not None:
        return {"crop_scale": opts.crop_scale, "crop_shift_y": opts.crop_shift_y or 0.0,
                "source": "given on the command line"}
    yunet = find_yunet(detector)
    # Validation faces, never test ones: the framing is a choice, and test is reported once.
    faces = prep.val_images or list(prep.x_val)
    if yunet is not None and faces:
        try:
            f = measure_framing(faces, yunet)
            f["source"] = f"measured with YuNet on {f['detected']} validation faces"
            return f
        except RuntimeError as e:
            log.warning("%s", e)
    log.warning("no YuNet model found: crop framing defaults to 1.0 (pass --detector)")
    return {"crop_scale": 1.0, "crop_shift_y": opts.crop_shift_y or 0.0,
            "source": "default (no detector available to measure)"}


def _golden_faces(prep: Any, test_faces: np.ndarray) -> np.ndarray:
    """One or two real test faces per emotion, so every output is exercised."""
    if not len(test_faces):
        return prep.x_val[:8]
    picks: list[int] = []
    for emo in FER_EMOTIONS:
        picks += [i for i, e in enumerate(prep.test_emotions) if e == emo][:2]
    return test_faces[picks[:16] or list(range(min(8, len(test_faces))))]


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("happy_vs_sad", "neutral_leak", "accuracy_argmax", "coverage", "accuracy_covered",
            "ece", "f1", "counts", "int8_float_agreement", "validation", "images")
    return {k: m[k] for k in keys if k in m}
