"""fit --camera-copies: training faces also trained as the device's camera path crops them
(training/camera_copies.py). Real FER faces and YuNet from ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.manifest import Preprocessing
from training.camera_copies import cached_copies, camera_copies, copies_key
from training.data import load_splits, to_array
from training.fit import FitOptions, prepare


def _faces(fer_zip: Path, n: int) -> list[np.ndarray]:
    test = load_splits(fer_zip, drop_twins=False)[0]["test"]
    pick = np.random.default_rng(0).choice(len(test), n, replace=False)
    return [test.images[i] for i in pick]


def test_a_copy_is_its_own_face_found_in_a_frame(fer_zip: Path, yunet_path: Path) -> None:
    faces = _faces(fer_zip, 40)
    pre = Preprocessing(size=64, crop_scale=1.0)
    idx, copies = camera_copies(faces, 0.5, 11, pre, yunet_path)
    assert copies.shape == (len(idx), 64, 64) and copies.dtype == np.uint8
    assert 16 <= len(idx) <= 20 and len(set(idx.tolist())) == len(idx)
    # Each copy is the face it is filed under (not another one), seen through the frame.
    plain = to_array(faces, 64).astype(np.float64)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    own = [corr(c, plain[i]) for i, c in zip(idx, copies, strict=True)]
    other = [corr(c, plain[(i + 1) % len(faces)]) for i, c in zip(idx, copies, strict=True)]
    # (measured: median 0.66 against 0.10; the detector frames a face a little unlike FER)
    assert np.median(own) > 0.5 and np.median(other) < 0.3
    assert not all(np.array_equal(c, plain[i]) for i, c in zip(idx, copies, strict=True))
    again_idx, again = camera_copies(faces, 0.5, 11, pre, yunet_path)  # seeded
    assert np.array_equal(again_idx, idx) and np.array_equal(again, copies)
    with pytest.raises(ValueError, match=r"--camera-copies 1\.5"):
        camera_copies(faces, 1.5, 11, pre, yunet_path)


def test_copies_are_cached_by_the_options_that_made_them(tmp_path: Path) -> None:
    made = (np.array([2, 5]), np.full((2, 8, 8), 7, np.uint8))
    idx, copies = cached_copies(tmp_path, {"fraction": 0.5}, lambda: made)
    assert np.array_equal(copies, made[1])

    def refuse() -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("made again although the cache holds them")

    idx2, copies2 = cached_copies(tmp_path, {"fraction": 0.5}, refuse)  # a resumed run
    assert np.array_equal(idx2, idx) and np.array_equal(copies2, copies)
    other = (np.array([1]), np.zeros((1, 8, 8), np.uint8))
    idx3, _ = cached_copies(tmp_path, {"fraction": 0.25}, lambda: other)
    assert idx3.tolist() == [1]
    # Each key keeps its own file: runs sharing a directory do not evict each other's.
    assert np.array_equal(cached_copies(tmp_path, {"fraction": 0.5}, refuse)[1], copies)
    assert len(list(tmp_path.glob("camera_copies-*.npz"))) == 2
    assert not list(tmp_path.glob("*.tmp.npz"))


def test_the_key_holds_the_faces_themselves() -> None:
    pre = Preprocessing(size=64, crop_scale=1.0)
    faces = [np.full((48, 48), v, np.uint8) for v in (10, 20, 30)]
    key = copies_key(faces, 0.5, 1, pre)
    assert copies_key([f.copy() for f in faces], 0.5, 1, pre) == key
    # Same count, other pixels or order: other copies (they are filed by position).
    assert copies_key([faces[0], faces[1], faces[1]], 0.5, 1, pre) != key
    assert copies_key(faces[::-1], 0.5, 1, pre) != key
    assert copies_key(faces, 0.5, 2, pre) != key
    assert copies_key(faces, 0.5, 1, Preprocessing(size=64, crop_scale=1.1)) != key


def test_fit_trains_the_copies_with_their_faces_labels(fer_zip: Path, yunet_path: Path,
                                                       tmp_path: Path) -> None:
    base = FitOptions(data=fer_zip, out=tmp_path / "plain", max_per_class=30, size=48)
    plain = prepare(base)
    opts = FitOptions(data=fer_zip, out=tmp_path / "copies", max_per_class=30, size=48,
                      camera_copies=0.5)
    prep = prepare(opts, yunet_path)
    n = len(plain.y_train)
    added = len(prep.y_train) - n
    assert round(0.8 * n / 2) <= added <= round(n / 2)
    # Training and validation faces as without copies: the same split, so runs compare.
    assert np.array_equal(prep.x_train[:n], plain.x_train)
    assert np.array_equal(prep.x_val, plain.x_val) and np.array_equal(prep.y_val, plain.y_val)
    (cache,) = opts.out.glob("camera_copies-*.npz")
    with np.load(cache) as z:
        idx = z["idx"]
    assert np.array_equal(prep.y_train[n:], plain.y_train[idx])


def test_runs_given_one_copies_cache_share_their_copies(
        fer_zip: Path, yunet_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "camera-copies"
    first = FitOptions(data=fer_zip, out=tmp_path / "a", max_per_class=30, size=48,
                       camera_copies=0.5, copies_cache=shared)
    made = prepare(first, yunet_path)
    assert len(list(shared.glob("camera_copies-*.npz"))) == 1
    assert not (first.out / "camera_copies.npz").exists()

    def refuse(*_: object) -> None:
        raise AssertionError("detected again although the shared cache holds them")

    # Another run (a width 3 of the same faces) finds them made; other faces do not.
    monkeypatch.setattr("training.camera_copies.camera_copies", refuse)
    again = prepare(FitOptions(data=fer_zip, out=tmp_path / "b", max_per_class=30, size=48,
                               width=3, camera_copies=0.5, copies_cache=shared), yunet_path)
    assert np.array_equal(again.x_train, made.x_train)
    with pytest.raises(AssertionError, match="detected again"):
        prepare(FitOptions(data=fer_zip, out=tmp_path / "c", max_per_class=20, size=48,
                           camera_copies=0.5, copies_cache=shared), yunet_path)
