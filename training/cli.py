"""`moodcam-train`: fit, evaluate, compare runs, export bundles, make signing keys, measure
framing."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from device.bundle import BundleError, load_signing_key, public_key_hex, write_bundle
from device.manifest import ManifestError
from device.runtime import RUNTIMES, ModelLoadError, RuntimeUnavailable
from training.data import LABEL_SETS, DataError
from training.deadline import DeadlineReached
from training.decision import DECISION_SEEDS
from training.fit_cli import add_fit_args, fit_options, floats, ints

log = logging.getLogger("moodcam-train")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodcam-train", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("fit", help="train, export int8, evaluate and bundle a model")
    add_fit_args(f)

    e = sub.add_parser("evaluate", help="evaluate an int8 model on a labelled set")
    e.add_argument("--model", type=Path, required=True,
                   help="model directory, its manifest.json or its .tflite")
    e.add_argument("--data", type=Path, required=True, help="zip or folder")
    e.add_argument("--split", default="test",
                   help="split to use when there are several; 'validation' is the set the"
                        " model's fit held out (from its manifest's training options)")
    e.add_argument("--runtime", choices=RUNTIMES, help="prefer this runtime")
    e.add_argument("--min-confidence", type=float,
                   help="one threshold for every label, overriding the manifest's")
    e.add_argument("--no-flip-average", action="store_true",
                   help="classify each face once even if the manifest averages it with its"
                        " mirror image (to measure what averaging adds)")
    e.add_argument("--zoom-views", type=floats,
                   help="views averaged per face, overriding the manifest's (e.g. 1.0)")
    e.add_argument("--align", choices=("none", "eyes"),
                   help="override the manifest's face alignment ('eyes' needs YuNet)")
    e.add_argument("--align-eye-distance", type=float,
                   help="with --align eyes: eye distance as a fraction of the side")
    e.add_argument("--align-eye-y", type=float,
                   help="with --align eyes: eyes' height as a fraction of the side")
    e.add_argument("--tilt", type=float, default=0.0,
                   help="roll each face by a seeded random angle within +-DEG first")
    e.add_argument("--landmark-cache", type=Path,
                   help="with alignment: .npz file caching YuNet's landmarks per image")
    e.add_argument("--json", action="store_true", help="print all metrics as JSON")
    e.add_argument("--out", type=Path, help="also write the metrics JSON here")
    e.add_argument("--camera", action="store_true",
                   help="place each face in a 640x480 camera-like frame and run the device's"
                        " detector and crop too")
    e.add_argument("--crop-scales", type=floats,
                   help="with --camera: compare these crop scales (e.g. 1.0,1.2,1.4)")
    e.add_argument("--detector", type=Path, help="YuNet .onnx (--camera, --align eyes)")
    e.add_argument("--limit", type=int, help="with --camera: evaluate this many faces")
    e.add_argument("--frame-seeds", type=ints,
                   help="with --camera: pool the faces of these seeds' frames, each also"
                        " scored alone (e.g. 0,1,2; default: one frame per face, seed 0)")
    e.add_argument("--input-width", type=int,
                   help="with --camera: shrink frames to this width for detection, as the "
                        "device's detector.input_width (default: its default; 0 = full frame)")
    e.add_argument("--recheck-score", type=float,
                   help="with --camera: the device's detector.recheck_score (default: its "
                        "default; 0 = off)")

    x = sub.add_parser("export", help="pack a model directory into a deployable bundle")
    x.add_argument("--model", type=Path, required=True, help="directory with manifest.json")
    x.add_argument("--out", type=Path, required=True, help="bundle file (.tar)")
    x.add_argument("--key", type=Path, help="Ed25519 signing key")

    c = sub.add_parser("compare", help="one markdown table of several finished runs")
    c.add_argument("runs", type=Path, nargs="+", help="run directories written by fit")

    d = sub.add_parser("demo-video", help="a video of test faces for `moodcam replay`")
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True, help="video file (.avi, MJPG)")
    d.add_argument("--emotions", default="happy,sad,neutral,happy,sad,neutral",
                   help="one segment per entry, in order")
    d.add_argument("--seconds", type=float, default=10.0, help="seconds per segment")

    r = sub.add_parser("rule", help="does a sad-vs-neutral bias in the decision rule raise"
                                    " sad recall at equal precision? (on validation)")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--split", default="validation",
                   help="'validation' (the model's own held-out faces): choose only there")
    r.add_argument("--against", type=Path, metavar="MODEL_DIR",
                   help="instead: the happy/sad thresholds at which no count figure is worse"
                        " than this model's, on validation crops and the camera path")
    r.add_argument("--detector", type=Path, help="YuNet .onnx for the camera path")
    r.add_argument("--frame-seeds", type=ints, default=DECISION_SEEDS,
                   help="with --against: the camera path pools these seeds' frames"
                        " (default: %(default)s, as fit --thresholds-against)")

    b = sub.add_parser("budget", help="int8 size and invoke time of untrained architectures")
    b.add_argument("--arch", choices=("minixception", "mobilenetv2"), default="minixception")
    b.add_argument("--size", type=int, default=64)
    b.add_argument("--widths", type=floats, default=(1.0, 1.5, 2.0, 2.5),
                   help="width multipliers; the first is the reference for the ratio")
    b.add_argument("--train-steps", type=int, default=0,
                   help="also time this many training steps (batch 64) per width")
    b.add_argument("--json", action="store_true")

    k = sub.add_parser("keygen", help="create an Ed25519 bundle-signing key")
    k.add_argument("--out", type=Path, required=True, help="private key file (mode 0600)")

    m = sub.add_parser("framing", help="measure the crop framing with YuNet on fit's"
                                       " validation faces")
    m.add_argument("--data", type=Path, required=True)
    m.add_argument("--detector", type=Path)
    m.add_argument("--limit", type=int, default=1500)
    m.add_argument("--landmarks", action="store_true",
                   help="also: how often YuNet gives landmarks, and the eye geometry")
    _validation_args(m)
    return p


def _validation_args(p: argparse.ArgumentParser) -> None:
    """fit's own options that define its validation set (same defaults as fit)."""
    p.add_argument("--labels", choices=sorted(LABEL_SETS), default="hsno",
                   help="label set of the fit whose validation set to use")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--max-per-class", type=int)


def _fit(a: argparse.Namespace) -> int:
    from training.pipeline import run_fit

    opts = fit_options(a)
    if opts.members and opts.teacher:
        raise DataError("--members and --teacher: an ensemble is not trained, so it has no"
                        " teacher; distil from the ensemble's run instead")
    if opts.members and opts.camera_copies:
        raise DataError("--members and --camera-copies: an ensemble is not trained, so"
                        " copies would change nothing; train its members with them")
    if opts.members and opts.fine_labels:
        raise DataError("--members and --fine-labels: an ensemble is not trained, so a"
                        " second head would change nothing; train its members with it")
    if not 0 <= opts.fine_labels <= 10:
        raise DataError(f"--fine-labels {opts.fine_labels:g}: give a loss weight in [0, 10]")
    if opts.out.exists() and any(opts.out.iterdir()) and not opts.resume:
        raise DataError(f"{opts.out} is not empty: pass --resume to continue that run, or"
                        " choose a new --out")
    from training.evaluate import format_metrics

    metrics = run_fit(opts, a.detector)
    metrics.setdefault("model", {"name": a.name, "version": "", "runtime": "ai-edge-litert"})
    metrics["data"] = str(a.data)
    if "happy_vs_sad" in metrics or "coverage" in metrics:
        print(format_metrics(_with_model(metrics, a.out)))
    print(f"run written to {a.out}")
    return 0


def _with_model(metrics: dict[str, object], out: Path) -> dict[str, object]:
    from device.manifest import load_manifest

    man = load_manifest(out / "manifest.json")
    return {**metrics, "model": {"name": man.name, "version": man.version,
                                 "runtime": "ai-edge-litert"}}


def _evaluate(a: argparse.Namespace) -> int:
    from training.evaluate import evaluate_model, format_metrics, write_metrics

    if a.camera:
        from training.camera_eval import evaluate_camera_path, format_camera
        from training.pipeline import find_yunet

        cam = evaluate_camera_path(a.model, a.data, find_yunet(a.detector), a.crop_scales,
                                   a.limit, input_width=a.input_width, split=a.split,
                                   recheck_score=a.recheck_score,
                                   frame_seeds=a.frame_seeds)
        if a.out:
            write_metrics(cam, a.out)
        print(json.dumps(cam) if a.json else format_camera(cam))
        return 0
    metrics = evaluate_model(a.model, a.data, a.split, a.runtime, a.min_confidence,
                             False if a.no_flip_average else None, a.zoom_views,
                             a.align, a.align_eye_distance, a.align_eye_y, a.detector,
                             a.landmark_cache, a.tilt)
    if a.out:
        write_metrics(metrics, a.out)
    print(json.dumps(metrics) if a.json else format_metrics(metrics))
    return 0


def _framing(a: argparse.Namespace) -> int:
    from training.data import VALIDATION, split_for
    from training.framing import measure_framing
    from training.pipeline import find_yunet

    yunet = find_yunet(a.detector)
    if yunet is None:
        raise DataError("no YuNet model: pass --detector PATH")
    val = split_for(a.data, VALIDATION, {"labels": a.labels, "seed": a.seed,
                                         "val_fraction": a.val_fraction,
                                         "max_per_class": a.max_per_class})
    result = measure_framing(val.images, yunet, a.limit)
    result["split"] = VALIDATION
    if a.landmarks:
        from training.evaluate import landmarks_for
        from training.landmarks import measure_geometry

        sample = val.images[:a.limit]
        result["align"] = measure_geometry(sample, landmarks_for(sample, yunet, None))
    print(json.dumps(result))
    return 0


def _rule(a: argparse.Namespace) -> int:
    import numpy as np

    from device.classify import Classifier
    from training.data import split_for
    from training.decision import tune_rule
    from training.evaluate import classify_faces, model_dir_of

    clf = Classifier.from_dir(model_dir_of(a.model))
    faces = split_for(a.data, a.split, clf.manifest.training.get("options") or {})
    if a.against is not None:
        from training.operating import search_against
        from training.pipeline import find_yunet

        ref = Classifier.from_dir(model_dir_of(a.against))
        names, found = search_against(clf, ref, faces.images, faces.emotions,
                                       find_yunet(a.detector), a.frame_seeds)
        print(json.dumps({"faces": names, "split": a.split, "result": found}, indent=1))
        return 0
    probs = classify_faces(clf, faces.images)
    result = tune_rule(probs, faces.emotions, clf.labels, np.asarray(clf.thresholds))
    result["split"] = a.split
    print(json.dumps(result, indent=1))
    return 0


def _keygen(a: argparse.Namespace) -> int:
    if a.out.exists():
        raise DataError(f"{a.out} exists; refusing to overwrite a signing key")
    seed = os.urandom(32)
    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(seed.hex() + "\n")
    pub = public_key_hex(seed)
    a.out.with_name(a.out.name + ".pub").write_text(pub + "\n")
    print(f"private key: {a.out} (keep it off the devices)\npublic key:  {pub}"
          f"\n(also in {a.out}.pub; put it in [model] public_key_file on each device)")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if a.cmd == "fit":
            try:
                return _fit(a)
            except DeadlineReached as e:
                log.info("%s", e)
                return 3
        if a.cmd == "evaluate":
            return _evaluate(a)
        if a.cmd == "export":
            seed = load_signing_key(a.key) if a.key else None
            print(write_bundle(a.out, a.model, seed))
            return 0
        if a.cmd == "compare":
            from training.compare import comparison_table

            print(comparison_table(a.runs))
            return 0
        if a.cmd == "demo-video":
            from training.demo_video import pick_faces, write_demo_video

            picked = pick_faces(a.data, a.emotions.split(","))
            n = write_demo_video([img for _, _, img in picked], a.out, a.seconds)
            for k, (emo, name, _) in enumerate(picked):
                print(f"{k * a.seconds:g}-{(k + 1) * a.seconds:g} s: {emo} ({name})")
            print(f"{a.out}: {n} frames")
            return 0
        if a.cmd == "keygen":
            return _keygen(a)
        if a.cmd == "rule":
            return _rule(a)
        if a.cmd == "budget":
            from training.budget import format_budget, measure

            rows = measure(a.arch, a.size, list(a.widths), train_steps=a.train_steps)
            print(json.dumps(rows) if a.json else format_budget(rows))
            return 0
        if a.cmd == "framing":
            return _framing(a)
    except (DataError, ManifestError, BundleError, ModelLoadError, RuntimeUnavailable,
            FileNotFoundError, ValueError) as e:
        print(f"moodcam-train: error: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
