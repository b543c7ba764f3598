"""`moodcam-train fit`'s flags and the FitOptions they make; shared argument types."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from training.data import LABEL_SETS
from training.deadline import parse_stop_by

if TYPE_CHECKING:
    from training.fit import FitOptions


def floats(v: str) -> tuple[float, ...]:
    return tuple(float(x) for x in v.split(","))


def ints(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(","))


def stop_by(v: str) -> float:
    try:
        return parse_stop_by(v)
    except ValueError as e:  # argparse would print only "invalid value" for a ValueError
        raise argparse.ArgumentTypeError(str(e)) from None


def add_fit_args(f: argparse.ArgumentParser) -> None:
    f.add_argument("--data", type=Path, required=True,
                   help="FER-2013 zip or folder (<split>/<label>/*.jpg|png)")
    f.add_argument("--out", type=Path, required=True, help="run directory (runs/NAME)")
    f.add_argument("--labels", choices=sorted(LABEL_SETS), default="hsno",
                   help="label set: hs=happy,sad; hsn=+neutral; hsno=+neutral,other")
    f.add_argument("--arch", choices=("minixception", "mobilenetv2"), default="minixception")
    f.add_argument("--size", type=int, default=64, help="input side in pixels")
    f.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    f.add_argument("--epochs", type=int, default=50)
    f.add_argument("--batch", type=int, default=64)
    f.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    f.add_argument("--seed", type=int, default=1234,
                   help="seeds the validation split (and training, without --init-seed)")
    f.add_argument("--init-seed", type=int,
                   help="seeds weights, shuffling and augmentation only: the same validation"
                        " faces as --seed, so such runs compare and average (--members)")
    f.add_argument("--val-fraction", type=float, default=0.1)
    f.add_argument("--max-per-class", type=int, help="cap images per class (quick runs)")
    f.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    f.add_argument("--min-confidence", type=float, default=0.55,
                   help="threshold for labels without a per-label one")
    f.add_argument("--flat-threshold", action="store_true",
                   help="no per-label thresholds: every label uses --min-confidence")
    f.add_argument("--thresholds-against", type=Path, metavar="MODEL_DIR",
                   help="choose the happy and sad thresholds, on validation, so that no"
                        " count figure is worse than this model's (e.g. models/)")
    f.add_argument("--camera-copies", type=float, default=0.0, metavar="FRACTION",
                   help="also train this fraction of the training faces as the device's"
                        " camera path crops them (placed in a frame, found by YuNet)")
    f.add_argument("--copies-cache", type=Path, metavar="DIR",
                   help="keep camera copies here, shared by runs made with the same"
                        " faces, fraction, seed and framing (default: the run directory)")
    f.add_argument("--fine-labels", type=float, default=0.0, metavar="WEIGHT",
                   help="also train a second head on the seven FER emotions with this loss"
                        " weight (e.g. 0.5); it is dropped at export. 0 = off")
    f.add_argument("--no-flip-average", action="store_true",
                   help="classify each face once, not averaged with its mirror image")
    f.add_argument("--zoom-views", type=floats,
                   help="views averaged per face: 1.0 the crop, 0.9 its central 90%%"
                        " (default: 1.0 or 1.0,0.9, whichever is better on validation)")
    f.add_argument("--crop-scale", type=float, help="skip measuring the crop framing")
    f.add_argument("--crop-shift-y", type=float)
    f.add_argument("--detector", type=Path, help="YuNet .onnx used to measure framing")
    f.add_argument("--key", type=Path, help="Ed25519 signing key (from `keygen`)")
    f.add_argument("--name", default="moodcam-fer")
    f.add_argument("--version", help="model version (default: UTC timestamp)")
    f.add_argument("--no-augment", action="store_true")
    f.add_argument("--align", choices=("none", "eyes"), default="none",
                   help="'eyes': align faces on YuNet's eye landmarks (training and device)")
    f.add_argument("--landmark-cache", type=Path,
                   help="with --align eyes: landmarks .npz shared between runs"
                        " (default: the run directory's landmarks.npz)")
    f.add_argument("--label-smoothing", type=float, default=0.05)
    f.add_argument("--mixup", type=float, default=0.0,
                   help="mixup Beta(a, a) on training batches (e.g. 0.2); 0 = off")
    f.add_argument("--teacher", type=Path,
                   help="a finished fit run (same size, labels, align) to distil from")
    f.add_argument("--distill-alpha", type=float, default=0.5,
                   help="with --teacher: weight of the label loss (rest: the teacher's)")
    f.add_argument("--distill-temperature", type=float, default=4.0)
    f.add_argument("--members", type=lambda v: tuple(Path(p) for p in v.split(",") if p),
                   default=(), help="RUN,RUN...: no training; average these finished fit runs"
                                    " (same size, labels, alignment, seed) into one model")
    f.add_argument("--stop-by", type=stop_by, metavar="'YYYY-MM-DD HH:MM'",
                   help="stop after the last epoch that ends before this time (local time"
                        " unless it names a zone) and exit 3; go on later with --resume")
    f.add_argument("--export-now", action="store_true",
                   help="with --resume: export the best checkpoint so far, train no further")


def fit_options(a: argparse.Namespace) -> FitOptions:
    from training.fit import FitOptions

    return FitOptions(
        data=a.data, out=a.out, labels=a.labels, arch=a.arch, size=a.size, width=a.width,
        epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed, init_seed=a.init_seed,
        val_fraction=a.val_fraction,
        max_per_class=a.max_per_class, resume=a.resume, min_confidence=a.min_confidence,
        crop_scale=a.crop_scale, crop_shift_y=a.crop_shift_y, key=a.key, name=a.name,
        version=a.version, augment=not a.no_augment,
        export_now=a.export_now, flip_average=not a.no_flip_average, zoom_views=a.zoom_views,
        count_thresholds=not a.flat_threshold, align=a.align,
        landmark_cache=a.landmark_cache,
        label_smoothing=a.label_smoothing, mixup=a.mixup, teacher=a.teacher,
        distill_alpha=a.distill_alpha, distill_temperature=a.distill_temperature,
        members=a.members, stop_by=a.stop_by,
        thresholds_against=a.thresholds_against, camera_copies=a.camera_copies,
        copies_cache=a.copies_cache,
        fine_labels=a.fine_labels)
