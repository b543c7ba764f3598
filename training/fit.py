"""Train a face-mood classifier with checkpoints that survive interruption (`--resume`)."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic import replacing
from training.augment import AugmentConfig, augment_batch
from training.data import (
    FER_EMOTIONS,
    LABEL_SETS,
    LoadReport,
    class_weights,
    fit_selection,
    load_splits,
    to_array,
)
from training.deadline import DeadlineReached, room_for_epoch
from training.runstate import last_model_path, options_json, read_state, state_path

log = logging.getLogger(__name__)


# Views the device may average per face: the crop alone, or with its central 90%.
ZOOM_CANDIDATES: tuple[tuple[float, ...], ...] = ((1.0,), (1.0, 0.9))


@dataclass
class FitOptions:
    data: Path
    out: Path
    labels: str = "hsno"
    arch: str = "minixception"
    size: int = 64
    width: float = 1.0
    epochs: int = 50
    batch: int = 64
    lr: float = 3e-3
    seed: int = 1234  # the validation split, and training's randomness unless init_seed
    # Seeds weights, shuffling and augmentation only, so runs that differ here hold out the
    # same validation faces (comparable, and averageable with --members); None: seed.
    init_seed: int | None = None
    val_fraction: float = 0.1
    max_per_class: int | None = None
    resume: bool = False
    min_confidence: float = 0.55
    crop_scale: float | None = None
    crop_shift_y: float | None = None
    key: Path | None = None
    name: str = "moodcam-fer"
    version: str | None = None
    augment: bool = True
    export_now: bool = False  # with resume: export the best checkpoint, train no further
    flip_average: bool = True  # device averages each face with its mirror image
    # ... and with zoomed views; None: the best of ZOOM_CANDIDATES on validation
    zoom_views: tuple[float, ...] | None = None
    count_thresholds: bool = True  # per-label thresholds for honest counts, else flat
    align: str = "none"  # "eyes": align faces on YuNet's eye landmarks (device/align.py)
    landmark_cache: Path | None = None  # with align: landmarks file (default: run dir)
    label_smoothing: float = 0.05
    mixup: float = 0.0  # Beta(alpha, alpha) mixup of training batches; 0 = off
    teacher: Path | None = None  # a finished fit run to distil from
    distill_alpha: float = 0.5  # weight of the label loss; the rest is the teacher's
    distill_temperature: float = 4.0
    members: tuple[Path, ...] = ()  # finished runs averaged into one model, no training
    stop_by: float | None = None  # Unix time: stop after the last epoch that ends before it
    # A model dir: happy/sad thresholds leaving no count figure worse than its (operating.py)
    thresholds_against: Path | None = None
    # Fraction of training faces trained a second time as the camera path crops them
    # (training/camera_copies.py); 0 = off
    camera_copies: float = 0.0
    copies_cache: Path | None = None  # their cache directory, shared by key (default: run dir)
    # Weight of a second head's loss on the seven FER emotions (training/finelabels.py);
    # the head is dropped at export. 0 = off
    fine_labels: float = 0.0


@dataclass
class Prepared:
    """Arrays ready for training: uint8 faces at the model size and class indices."""

    label_set: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    test_images: list[np.ndarray]
    test_emotions: list[str]
    report: LoadReport
    extra: dict[str, Any] = field(default_factory=dict)
    # The validation faces at their stored size, for measurements made on validation
    val_images: list[np.ndarray] = field(default_factory=list)
    # With fine_labels: each face's FER emotion (0-6) beside its class index
    f_train: np.ndarray | None = None
    f_val: np.ndarray | None = None


def prepare(opts: FitOptions, detector: Path | None = None) -> Prepared:
    """Load, select and split the data; with `align` "eyes", find YuNet's landmarks on
    every face (cached in the run's landmarks.npz), measure FER's eye geometry on the
    validation faces and align every face the device's way (plain crop where none)."""
    if opts.labels not in LABEL_SETS:
        raise ValueError(f"unknown label set {opts.labels!r}; choose {', '.join(LABEL_SETS)}")
    label_set = LABEL_SETS[opts.labels]
    splits, report = load_splits(opts.data)
    if "train" not in splits:
        raise ValueError(f"{opts.data} has no 'train' split (found {', '.join(splits)})")
    train = splits["train"]
    sel = fit_selection(train, label_set, opts.seed, opts.val_fraction, opts.max_per_class)
    keep, y, tr, va = sel.keep, sel.y, sel.train, sel.val
    images = [train.images[i] for i in keep]
    test = splits.get("test")
    extra: dict[str, Any] = {}
    if opts.align == "eyes":
        x, extra = _aligned(opts, images, va, test.images if test else [], detector)
    else:
        x = to_array(images, opts.size)
    x_tr, y_tr = x[tr], y[tr]
    fine = None
    if opts.fine_labels > 0:
        from training.finelabels import fine_indices

        fine = fine_indices([train.emotions[i] for i in keep])
    f_tr = fine[tr] if fine is not None else None
    if opts.camera_copies > 0:
        x_tr, idx = _with_copies(opts, [images[i] for i in tr], x_tr,
                                 [images[i] for i in va], extra, detector)
        y_tr = np.concatenate([y_tr, y_tr[idx]])
        f_tr = np.concatenate([f_tr, f_tr[idx]]) if f_tr is not None else None
    return Prepared(label_set, x_tr, y_tr, x[va], y[va],
                    test.images if test else [], test.emotions if test else [], report,
                    extra, val_images=[images[i] for i in va], f_train=f_tr,
                    f_val=fine[va] if fine is not None else None)


def _aligned(opts: FitOptions, images: list[np.ndarray], va: np.ndarray,
             test_images: list[np.ndarray], detector: Path | None
             ) -> tuple[np.ndarray, dict[str, Any]]:
    from device.detect import find_yunet, make_detector
    from device.manifest import Preprocessing
    from training.landmarks import LandmarkCache, measure_geometry, to_aligned_array

    path = find_yunet(detector)
    if path is None:
        raise ValueError("--align eyes needs the YuNet model: pass --detector PATH")
    opts.out.mkdir(parents=True, exist_ok=True)
    cache = LandmarkCache(opts.landmark_cache or opts.out / "landmarks.npz")
    det = make_detector(path, "yunet")
    t0 = time.time()
    lms = cache.get(images, det)
    test_lms = cache.get(test_images, det)
    cache.save()
    geometry = measure_geometry([images[i] for i in va], lms[va])
    log.info("landmarks in %.0f s; FER eye geometry on validation: %s", time.time() - t0,
             geometry)
    pre = Preprocessing(size=opts.size, align="eyes",
                        align_eye_distance=geometry["align_eye_distance"],
                        align_eye_y=geometry["align_eye_y"])
    return to_aligned_array(images, lms, pre), {"align": geometry, "preprocessing": pre,
                                                "test_landmarks": test_lms}


def _with_copies(opts: FitOptions, train_images: list[np.ndarray], x_tr: np.ndarray,
                 val_images: list[np.ndarray], extra: dict[str, Any],
                 detector: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The training faces with camera copies appended (cached by key in --copies-cache or
    the run directory), cropped with the framing the device will use (measured on
    validation, as export does), and the training positions the copies were made of."""
    from device.detect import find_yunet
    from device.manifest import Preprocessing
    from training.camera_copies import cached_copies, camera_copies, copies_key
    from training.framing import measure_framing

    path = find_yunet(detector)
    if path is None:
        raise ValueError("--camera-copies needs the YuNet model: pass --detector PATH")
    pre = extra.get("preprocessing")
    if pre is None:
        if opts.crop_scale is not None:
            framing = {"crop_scale": opts.crop_scale, "crop_shift_y": opts.crop_shift_y or 0.0}
        else:
            framing = measure_framing(val_images, path)
        pre = Preprocessing(size=opts.size, crop_scale=framing["crop_scale"],
                            crop_shift_y=framing["crop_shift_y"])
    key = copies_key(train_images, opts.camera_copies, opts.seed, pre)
    idx, copies = cached_copies(
        opts.copies_cache or opts.out, key,
        lambda: camera_copies(train_images, opts.camera_copies, opts.seed, pre, path))
    return np.concatenate([x_tr, copies]), idx


class Checkpointer:
    """Full model (weights + optimizer) and run state after every epoch, atomically."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "checkpoint"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.model_path = last_model_path(run_dir)
        self.best_path = self.dir / "best.weights.h5"
        self.state_path = state_path(run_dir)

    def load_state(self) -> dict[str, Any] | None:
        # A state without its model cannot resume: the run starts over.
        if not self.model_path.exists():
            return None
        return read_state(self.dir.parent)

    def save(self, model: Any, state: dict[str, Any], best: bool) -> None:
        with replacing(self.model_path) as tmp:
            model.save(tmp)
        if best:
            with replacing(self.best_path) as tmp:
                model.save_weights(tmp)
        with replacing(self.state_path) as tmp:
            tmp.write_text(json.dumps(state, indent=1))


def _dataset(tf: Any, x: np.ndarray, y: np.ndarray, n_classes: int, batch: int,
             weights: dict[int, float] | None, aug: AugmentConfig | None, seed: int,
             shuffle: bool, mixup_alpha: float = 0.0, teacher: Any = None,
             fine: np.ndarray | None = None) -> Any:
    """Batches of (face, target, weight); the target is the one-hot label, then the
    one-hot FER emotion with `fine` (both mixed with mixup), then the teacher's logits on
    the same augmented face when distilling."""
    w = np.ones(len(y), np.float32) if weights is None else np.array(
        [weights[int(c)] for c in y], np.float32)
    f = np.zeros_like(y) if fine is None else fine
    ds = tf.data.Dataset.from_tensor_slices((x, y, f, w))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)

    def _map(xb: Any, yb: Any, fb: Any, wb: Any) -> Any:
        xf = tf.cast(xb, tf.float32)[..., None] / 255.0
        if aug is not None:
            xf = augment_batch(xf, aug)
        target = tf.one_hot(yb, n_classes)
        if fine is not None:
            target = tf.concat([target, tf.one_hot(fb, len(FER_EMOTIONS))], axis=-1)
        if mixup_alpha > 0:
            from training.distill import mixup

            xf, target, wb = mixup(tf, xf, target, wb, mixup_alpha)
        if teacher is not None:
            target = tf.concat([target, teacher(xf, training=False)], axis=-1)
        return xf, target, wb

    return ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _compile(keras: Any, model: Any, lr: float, steps: int, label_smoothing: float = 0.05,
             distill: Any = None, n_classes: int = 0) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.1, decay_steps=steps, warmup_target=lr,
        warmup_steps=max(1, steps // 40), alpha=0.01)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4)
    if distill is not None:
        from training.distill import packed_accuracy
        from training.finelabels import head_accuracy

        # Named "acc" like the plain runs' metric, so curves and reports read the same key.
        acc = (keras.metrics.MeanMetricWrapper(head_accuracy, name="acc", n_classes=n_classes)
               if n_classes else keras.metrics.MeanMetricWrapper(packed_accuracy, name="acc"))
        model.compile(optimizer=optimizer, loss=distill, metrics=[acc])
        return
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                  label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="acc")])


def refuse_past_deadline(opts: FitOptions) -> None:
    """Raise DeadlineReached before any data is loaded when a resumed run has no room left
    for an epoch before --stop-by, judged by its mean epoch so far."""
    if opts.stop_by is None or opts.export_now or not opts.resume:
        return
    state = Checkpointer(opts.out).load_state()
    if (state is not None and 0 < state["epoch"] < opts.epochs
            and not room_for_epoch(time.time(), opts.stop_by,
                                   state.get("wall_s", 0.0) / state["epoch"])):
        raise DeadlineReached(state["epoch"], opts.epochs)


def _same_run(was: str | None, given: Path | None) -> bool:
    """Whether a checkpoint's recorded --teacher and this one name the same directory: the
    same run is often spelled two ways (`../runs/x` and `/work/runs/x`)."""
    if was is None or given is None:
        return was is None and given is None
    return was == str(given) or Path(was).resolve() == given.resolve()


def train(opts: FitOptions, prep: Prepared) -> tuple[Any, dict[str, Any]]:
    """Train (or resume) and return the model with the best validation weights."""
    import keras
    import tensorflow as tf

    from training.distill import DistillLoss, load_teacher
    from training.finelabels import FineLabelLoss, label_head, with_fine_head
    from training.models import build

    if opts.members:
        from training.ensemble import ensemble_run

        return ensemble_run(opts)
    train_seed = opts.seed if opts.init_seed is None else opts.init_seed
    keras.utils.set_random_seed(train_seed)
    n = len(prep.label_set)
    ck = Checkpointer(opts.out)
    state = ck.load_state() if opts.resume else None
    steps = opts.epochs * int(np.ceil(len(prep.y_train) / opts.batch))
    if state is not None:
        was = state.get("options", {}).get("teacher")
        if not _same_run(was, opts.teacher):
            # The checkpoint's loss expects (or lacks) the teacher's logits in its targets.
            raise ValueError(f"{opts.out} was trained with --teacher {was}; resume it with"
                             " the same --teacher")
        was_fine = float(state.get("options", {}).get("fine_labels", 0.0))
        if was_fine != opts.fine_labels:
            raise ValueError(f"{opts.out} was trained with --fine-labels {was_fine:g}; resume"
                             " it with the same --fine-labels")
        model = keras.models.load_model(ck.model_path)
        log.info("resuming %s from epoch %d", opts.out, state["epoch"])
        # The run is now planned for this --epochs (experiments.sh's `finished` reads it).
        state.setdefault("options", {})["epochs"] = opts.epochs
    else:
        if opts.resume:
            log.warning("--resume: no checkpoint in %s, starting from scratch", opts.out)
        model = build(opts.arch, opts.size, n, opts.width)
        loss = (DistillLoss(n, opts.distill_alpha, opts.distill_temperature,
                            opts.label_smoothing) if opts.teacher else None)
        if opts.fine_labels > 0:
            model = with_fine_head(model)
            loss = FineLabelLoss(n, opts.fine_labels, opts.label_smoothing,
                                 opts.teacher is not None, opts.distill_alpha,
                                 opts.distill_temperature)
        _compile(keras, model, opts.lr, steps, opts.label_smoothing, loss,
                 n if opts.fine_labels > 0 else 0)
        state = {"epoch": 0, "history": {}, "best_val_loss": None, "options": options_json(opts)}
    weights = class_weights(prep.y_train, n)
    aug = AugmentConfig() if opts.augment else None
    teacher = (load_teacher(opts.teacher, opts.size, opts.labels, opts.align)
               if opts.teacher else None)
    ds_train = _dataset(tf, prep.x_train, prep.y_train, n, opts.batch, weights, aug,
                        train_seed, True, opts.mixup, teacher, prep.f_train)
    ds_val = _dataset(tf, prep.x_val, prep.y_val, n, 256, None, None, opts.seed, False,
                      teacher=teacher, fine=prep.f_val)

    class _Save(keras.callbacks.Callback):
        stopped = False

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.t0 = time.monotonic()  # NTP may step the wall clock mid-epoch

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            assert state is not None
            took = time.monotonic() - self.t0
            # Per epoch, so a run stopped at a session's end keeps the time it took.
            state["wall_s"] = state.get("wall_s", 0.0) + took
            for k, v in (logs or {}).items():
                state["history"].setdefault(k, []).append(float(v))
            state["epoch"] = epoch + 1
            vl = float((logs or {}).get("val_loss", np.inf))
            best = state["best_val_loss"] is None or vl < state["best_val_loss"]
            if best:
                state["best_val_loss"] = vl
                state["best_epoch"] = epoch + 1
            ck.save(self.model, state, best)
            # Only after the save, so the stopped run resumes from this epoch.
            if (opts.stop_by is not None and epoch + 1 < opts.epochs
                    and not room_for_epoch(time.time(), opts.stop_by, took)):
                self.model.stop_training = self.stopped = True

    if state["epoch"] < opts.epochs and not (opts.export_now and opts.resume):
        saver = _Save()
        model.fit(ds_train, validation_data=ds_val, epochs=opts.epochs,
                  initial_epoch=state["epoch"], callbacks=[saver],
                  verbose=1 if sys.stderr.isatty() else 2)
        if saver.stopped:
            raise DeadlineReached(state["epoch"], opts.epochs)
    if ck.best_path.exists():
        model.load_weights(ck.best_path)
    return label_head(model), state

