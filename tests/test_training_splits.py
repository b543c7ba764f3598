"""Nothing is chosen on test: framing and validation figures use fit's validation faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import write_tree
from training import cli, framing, pipeline
from training.data import load_splits, split_for, to_array, validation_split
from training.fit import FitOptions, prepare

PER_CLASS = {"train": {"happy": 30, "sad": 30, "neutral": 30, "angry": 10, "surprise": 10},
             "test": {"happy": 8, "sad": 8, "neutral": 8, "angry": 4, "surprise": 4}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("splits") / "data", PER_CLASS, seed=5)


def _digests(images: list[np.ndarray]) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_validation_split_is_exactly_what_fit_holds_out(tree: Path, tmp_path: Path) -> None:
    prep = prepare(FitOptions(data=tree, out=tmp_path, size=32, seed=7, val_fraction=0.2))
    splits, _ = load_splits(tree)
    val = validation_split(splits, "hsno", seed=7, val_fraction=0.2)
    assert np.array_equal(to_array(val.images, 32), prep.x_val)
    assert all(n.startswith("train/") for n in val.names)
    assert _digests(val.images) == _digests(prep.val_images)
    assert not _digests(val.images) & _digests(splits["test"].images)
    # Another seed holds out other faces: the seed is part of the definition.
    other = validation_split(splits, "hsno", seed=8, val_fraction=0.2)
    assert _digests(other.images) != _digests(val.images)


def test_fit_measures_the_crop_framing_on_validation_faces(
        tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[np.ndarray] = []

    def fake_measure(images: list[np.ndarray], yunet: Path) -> dict[str, object]:
        seen.extend(images)
        return {"crop_scale": 1.0, "crop_shift_y": 0.0, "detected": len(images)}

    monkeypatch.setattr(pipeline, "measure_framing", fake_measure)
    prep = prepare(FitOptions(data=tree, out=tmp_path, size=32))
    assert prep.test_images  # a test split exists, and is not what framing sees
    f = pipeline._framing(FitOptions(data=tree, out=tmp_path, size=32), prep, tree)
    assert _digests(seen) == _digests(prep.val_images) and len(seen) == len(prep.y_val)
    assert not _digests(seen) & _digests(prep.test_images)
    assert "validation faces" in f["source"]


def test_framing_command_measures_on_fits_validation_faces(
        tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[np.ndarray] = []

    def fake_measure(images: list[np.ndarray], yunet: Path, limit: int) -> dict[str, object]:
        seen.extend(images[:limit])
        return {"crop_scale": 1.0, "crop_shift_y": 0.0}

    monkeypatch.setattr(framing, "measure_framing", fake_measure)
    detector = next(tree.rglob("*.png"))  # any existing file: the measurement is faked
    assert cli.main(["framing", "--data", str(tree), "--detector", str(detector),
                     "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "validation"
    splits, _ = load_splits(tree)
    assert _digests(seen) == _digests(validation_split(splits, "hsno", seed=3).images)
    assert not _digests(seen) & _digests(splits["test"].images)


def test_split_for_names_the_choices_when_a_split_is_missing(tree: Path) -> None:
    with pytest.raises(ValueError, match="'validation' for fit's validation set"):
        split_for(tree, "dev")


def test_evaluate_on_validation_uses_the_models_own_held_out_faces(
        model_dir: Path, tree: Path) -> None:
    from training.evaluate import evaluate_model

    m = evaluate_model(model_dir, tree, "validation")
    options = json.loads((model_dir / "manifest.json").read_text())["training"]["options"]
    splits, _ = load_splits(tree)
    val = validation_split(splits, options["labels"], options["seed"],
                           options["val_fraction"])
    assert m["split"] == "validation" and m["images"] == len(val.images)
    assert m["images"] != len(splits["test"].images)
