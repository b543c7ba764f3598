"""The data loader: namings, zip and folder, defects, leakage, splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.synthetic import face, write_tree, zip_tree
from training.data import (
    LABEL_SETS,
    DataError,
    check_classes,
    class_weights,
    load_splits,
    map_labels,
    stratified_split,
)

SMALL = {"train": {"happy": 6, "sad": 5, "neutral": 4, "angry": 3},
         "test": {"happy": 3, "sad": 3, "neutral": 2, "angry": 2}}


def test_folder_and_zip_give_the_same_data(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", SMALL)
    a, ra = load_splits(root)
    b, rb = load_splits(zip_tree(root, tmp_path / "data.zip"))
    assert ra.counts == rb.counts == {
        "train": {"angry": 3, "happy": 6, "neutral": 4, "sad": 5},
        "test": {"angry": 2, "happy": 3, "neutral": 2, "sad": 3}}
    for split in a:
        assert all(np.array_equal(x, y) for x, y in zip(a[split].images, b[split].images,
                                                         strict=True))


def test_emotion_detection_naming_maps_to_fer_names(tmp_path: Path) -> None:
    names = {"angry": "angry", "surprise": "surprised", "happy": "happy"}
    root = write_tree(tmp_path, {"train": {"angry": 2, "surprise": 2, "happy": 2}},
                      names=names, ext=".jpg")
    (tmp_path / "train" / "fearful").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "fearful" / "f.jpg"),
                face("sad", np.random.default_rng(1)))
    splits, report = load_splits(root)
    assert report.counts["train"] == {"angry": 2, "fear": 1, "happy": 2, "surprise": 2}
    y = map_labels(splits["train"].emotions, LABEL_SETS["hsno"])
    assert sorted(set(y.tolist())) == [0, 3]  # happy and other


def test_corrupt_and_blank_images_are_skipped_and_counted(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"train": {"happy": 3, "sad": 3}})
    (root / "train" / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "train" / "sad" / "truncated.png").write_bytes(
        (root / "train" / "sad" / "train_sad_0.png").read_bytes()[:40])
    cv2.imwrite(str(root / "train" / "sad" / "black.png"), np.zeros((48, 48), np.uint8))
    _, report = load_splits(root)
    assert len(report.unreadable) == 2
    assert report.near_blank == ["train/sad/black.png"]
    assert report.counts["train"] == {"happy": 3, "sad": 3}


def test_train_images_identical_to_test_images_are_dropped(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"train": {"happy": 4, "sad": 4}, "test": {"happy": 2}})
    twin = (root / "test" / "happy" / "test_happy_0.png").read_bytes()
    (root / "train" / "happy" / "twin.png").write_bytes(twin)
    (root / "train" / "sad" / "twin-mislabelled.png").write_bytes(twin)
    splits, report = load_splits(root)
    assert report.twins_dropped == 2
    assert report.test_with_twin == 1
    assert report.twins_dropped_by_label == {"happy": 1, "sad": 1}
    assert report.conflicting_groups == 1
    assert len(splits["train"]) == 8


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_splits(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "missing.zip")


def test_missing_class_is_a_clear_error(tmp_path: Path) -> None:
    splits, _ = load_splits(write_tree(tmp_path, {"train": {"happy": 3, "neutral": 3}}))
    y = map_labels(splits["train"].emotions, LABEL_SETS["hsn"])
    with pytest.raises(DataError, match=r"no images for class.*sad"):
        check_classes("train", y, LABEL_SETS["hsn"])


def test_stratified_split_is_seeded_and_keeps_proportions() -> None:
    y = np.array([0] * 700 + [1] * 300)
    tr, va = stratified_split(y, 0.1, seed=7)
    tr2, va2 = stratified_split(y, 0.1, seed=7)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not set(tr) & set(va) and len(tr) + len(va) == 1000
    assert np.bincount(y[va]).tolist() == [70, 30]


def test_class_weights_balance_happy_and_sad() -> None:
    y = np.array([0] * 7215 + [1] * 4830)
    w = class_weights(y, 2)
    assert w[0] * 7215 == pytest.approx(w[1] * 4830)
    assert w[1] > 1 > w[0]


def test_fer_download_loads_with_its_known_defects(fer_zip: Path) -> None:
    _, report = load_splits(fer_zip)
    assert report.files == 35887
    assert report.test_with_twin == 567  # 568 minus one near-blank test image
    assert report.twins_dropped_by_label["happy"] == 57
    assert len(report.near_blank) == 13
    assert report.counts["test"]["happy"] == 1774 and report.counts["test"]["sad"] == 1247
    assert report.counts["test"]["neutral"] == 1233
