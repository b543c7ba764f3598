"""Load a labelled face set: the Kaggle FER-2013 download or any `<split>/<label>/*` tree.

Handles both Kaggle namings, zip or folder, and FER-2013's defects: train/test twins are
dropped from train (they inflate every test figure), near-blank and unreadable files are
skipped and counted, duplicates are reported.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from device.preprocess import resize_face, to_gray

log = logging.getLogger(__name__)

# "Emotion Detection" names -> FER-2013 names; everything else passes through lowercased.
ALIASES = {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
SPLIT_ALIASES = {"training": "train", "val": "validation", "testing": "test"}

# Label sets a model can be trained for. "other" pools the remaining FER emotions so that
# angry or surprised faces are not forced into happy/sad/neutral.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "hs": ("happy", "sad"),
    "hsn": ("happy", "sad", "neutral"),
    "hsno": ("happy", "sad", "neutral", "other"),
}
NEAR_BLANK_STD = 3.0


class DataError(ValueError):
    """The data set cannot be used as given (missing class, empty split, ...)."""


@dataclass
class LoadReport:
    files: int = 0
    unreadable: list[str] = field(default_factory=list)
    near_blank: list[str] = field(default_factory=list)
    duplicate_groups: int = 0
    conflicting_groups: int = 0
    twins_dropped: int = 0
    test_with_twin: int = 0
    twins_dropped_by_label: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "files": self.files,
            "unreadable": len(self.unreadable),
            "near_blank": len(self.near_blank),
            "duplicate_groups": self.duplicate_groups,
            "conflicting_label_groups": self.conflicting_groups,
            "test_images_with_train_twin": self.test_with_twin,
            "train_test_twins_dropped": self.twins_dropped,
            "twins_dropped_by_label": dict(self.twins_dropped_by_label),
            "counts": self.counts,
        }


@dataclass
class Split:
    """Images of one split at their stored size (FER: 48x48) with emotion names."""

    images: list[np.ndarray]
    emotions: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def _normalise_label(name: str) -> str:
    low = name.strip().lower()
    return ALIASES.get(low, low)


def _entries(source: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, label, name, bytes) for every image file under source (zip or folder)."""
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                p = PurePosixPath(info.filename)
                if info.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if any(part.startswith(("__MACOSX", ".")) for part in p.parts):
                    continue
                if len(p.parts) < 3:
                    continue
                yield p.parts[-3], p.parts[-2], info.filename, zf.read(info)
    elif source.is_dir():
        for f in sorted(source.rglob("*")):
            if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = f.relative_to(source)
            if len(rel.parts) < 3 or any(part.startswith(".") for part in rel.parts):
                continue
            yield rel.parts[-3], rel.parts[-2], str(rel), f.read_bytes()
    elif not source.exists():
        raise DataError(f"data source not found: {source}")
    else:
        raise DataError(f"{source} is neither a zip archive nor a folder")


def load_splits(source: Path, drop_twins: bool = True
                ) -> tuple[dict[str, Split], LoadReport]:
    """Read every `<split>/<label>/<image>`; drop train images identical to a test image."""
    report = LoadReport()
    splits: dict[str, Split] = {}
    digests: dict[str, list[bytes]] = {}
    for split, label, name, raw in _entries(source):
        report.files += 1
        split = SPLIT_ALIASES.get(split.lower(), split.lower())
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0 or img.dtype != np.uint8:
            report.unreadable.append(name)
            continue
        gray = to_gray(img)
        if float(gray.std()) < NEAR_BLANK_STD:
            report.near_blank.append(name)
            continue
        s = splits.setdefault(split, Split([], [], []))
        s.images.append(gray)
        s.emotions.append(_normalise_label(label))
        s.names.append(name)
        # Pixel identity, not file identity: FER twins are re-encoded JPEGs of one array.
        digests.setdefault(split, []).append(
            hashlib.sha1(gray.tobytes() + bytes(gray.shape)).digest())
    if not splits:
        raise DataError(f"no images found in {source}: expected <split>/<label>/*.jpg|png")
    _report_duplicates(splits, digests, report)
    if drop_twins and "train" in splits and "test" in splits:
        test_hashes = set(digests["test"])
        train_hashes = set(digests["train"])
        report.test_with_twin = sum(1 for d in digests["test"] if d in train_hashes)
        keep = [i for i, d in enumerate(digests["train"]) if d not in test_hashes]
        tr = splits["train"]
        dropped = Counter(tr.emotions[i] for i, d in enumerate(digests["train"])
                          if d in test_hashes)
        report.twins_dropped = sum(dropped.values())
        report.twins_dropped_by_label = dict(sorted(dropped.items()))
        splits["train"] = Split([tr.images[i] for i in keep], [tr.emotions[i] for i in keep],
                                [tr.names[i] for i in keep])
    report.counts = {k: dict(sorted(Counter(v.emotions).items())) for k, v in splits.items()}
    return splits, report


def _report_duplicates(splits: dict[str, Split], digests: dict[str, list[bytes]],
                       report: LoadReport) -> None:
    groups: dict[bytes, set[str]] = {}
    sizes: Counter[bytes] = Counter()
    for split, ds in digests.items():
        for d, emo in zip(ds, splits[split].emotions, strict=True):
            groups.setdefault(d, set()).add(emo)
            sizes[d] += 1
    report.duplicate_groups = sum(1 for n in sizes.values() if n > 1)
    report.conflicting_groups = sum(1 for g in groups.values() if len(g) > 1)


def map_labels(emotions: list[str], label_set: tuple[str, ...]) -> np.ndarray:
    """Emotion names -> class indices of the label set; -1 where the set has no place."""
    index = {name: i for i, name in enumerate(label_set)}
    other = index.get("other", -1)
    out = np.empty(len(emotions), np.int64)
    for i, e in enumerate(emotions):
        out[i] = index.get(e, other)
    return out


def check_classes(split_name: str, y: np.ndarray, label_set: tuple[str, ...]) -> None:
    counts = np.bincount(y[y >= 0], minlength=len(label_set))
    empty = [label_set[i] for i, n in enumerate(counts) if n == 0]
    if empty:
        raise DataError(f"split '{split_name}' has no images for class(es) {', '.join(empty)}"
                        f" of label set {','.join(label_set)}")


def to_array(images: list[np.ndarray], size: int) -> np.ndarray:
    """Faces -> N x size x size uint8 through the device's own resize."""
    return np.stack([resize_face(im, size) for im in images]) if images else np.zeros(
        (0, size, size), np.uint8)


def stratified_split(y: np.ndarray, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    tr: list[np.ndarray] = []
    va: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 (7,215 happy vs 4,830 sad)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = counts.sum() / (n_classes * np.maximum(counts, 1))
    return {i: float(v) for i, v in enumerate(w)}


@dataclass(frozen=True)
class FitSelection:
    """Which train-split images `fit` uses and how it splits them: one definition, so the
    framing measurement, the camera-path scan and `evaluate --split validation` see the
    very validation faces `fit` held out (nothing is chosen on test)."""

    keep: np.ndarray  # indices into the train split (after twins are dropped)
    y: np.ndarray  # class index of each kept image
    train: np.ndarray  # positions in keep used for training
    val: np.ndarray  # positions in keep held out for validation


def fit_selection(train: Split, label_set: tuple[str, ...], seed: int, val_fraction: float,
                  max_per_class: int | None = None) -> FitSelection:
    y = map_labels(train.emotions, label_set)
    keep = np.flatnonzero(y >= 0)
    if max_per_class:
        rng = np.random.default_rng(seed)
        capped = [rng.permutation(keep[y[keep] == c])[:max_per_class]
                  for c in range(len(label_set))]
        keep = np.sort(np.concatenate(capped))
    y = y[keep]
    check_classes("train", y, label_set)
    tr, va = stratified_split(y, val_fraction, seed)
    return FitSelection(keep, y, tr, va)


VALIDATION = "validation"


def validation_split(splits: dict[str, Split], labels: str = "hsno", seed: int = 1234,
                     val_fraction: float = 0.1, max_per_class: int | None = None) -> Split:
    """fit's held-out validation faces at their stored size (FER: 48 px), from splits
    loaded with twins dropped as `fit` loads them. A data set with its own `validation`
    split is not what `fit` validates on, so the train split's selection is used."""
    if "train" not in splits:
        raise DataError(f"no 'train' split to draw fit's validation set from (found "
                        f"{', '.join(sorted(splits))})")
    tr = splits["train"]
    sel = fit_selection(tr, LABEL_SETS[labels], seed, val_fraction, max_per_class)
    idx = sel.keep[sel.val]
    return Split([tr.images[i] for i in idx], [tr.emotions[i] for i in idx],
                 [tr.names[i] for i in idx])


def split_for(source: Path, split: str, options: dict[str, object] | None = None) -> Split:
    """The named split of a data set; `validation` is fit's seeded validation set (with
    the label set, seed, fraction and cap in `options`, e.g. a manifest's
    training.options) unless the data set has its own."""
    if split == VALIDATION:
        splits, _ = load_splits(source, drop_twins=True)
        if VALIDATION in splits and "train" not in splits:
            return splits[VALIDATION]
        o = options or {}
        return validation_split(
            splits, str(o.get("labels", "hsno")), int(str(o.get("seed", 1234))),
            float(str(o.get("val_fraction", 0.1))),
            int(str(o["max_per_class"])) if o.get("max_per_class") else None)
    splits, _ = load_splits(source, drop_twins=False)
    if split in splits:
        return splits[split]
    raise DataError(f"{source} has no split {split!r} (found {', '.join(sorted(splits))},"
                    f" or {VALIDATION!r} for fit's validation set)")

