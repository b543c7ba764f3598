"""Caches and checkpoints are replaced whole or not at all (training/atomic.py)."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.atomic import replacing
from training.camera_copies import cached_copies
from training.fit import Checkpointer
from training.landmarks import LandmarkCache


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(OSError), replacing(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_each_writer_has_a_name_of_its_own_with_the_target_suffixes(tmp_path: Path) -> None:
    target = tmp_path / "best.weights.h5"
    with replacing(target) as a, replacing(target) as b:
        assert a != b and a.parent == b.parent == tmp_path
        # Keras picks the format by the suffix: '.weights.h5' must survive.
        assert a.name.endswith(".weights.h5") and b.name.endswith(".weights.h5")
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block ends last
    assert [p.name for p in tmp_path.iterdir()] == ["best.weights.h5"]


def test_a_landmark_cache_named_without_npz_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "landmarks"  # numpy would add '.npz' to a path it is given
    cache = LandmarkCache(path)
    cache.table["k"] = np.arange(10, dtype=np.float32).reshape(5, 2)
    cache._dirty = True
    cache.save()
    assert [p.name for p in tmp_path.iterdir()] == ["landmarks"]
    assert np.array_equal(LandmarkCache(path).table["k"], cache.table["k"])


def test_a_full_disk_leaves_the_copies_cache_as_it_was(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    made = (np.array([1]), np.zeros((1, 4, 4), np.uint8))
    cached_copies(tmp_path, {"fraction": 0.5}, lambda: made)
    before = sorted(p.name for p in tmp_path.iterdir())

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(OSError):
        cached_copies(tmp_path, {"fraction": 0.25}, lambda: made)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


class _Model:
    """What Checkpointer asks of a Keras model; `fail` makes its next save die half-way."""

    def __init__(self, text: str, fail: bool = False) -> None:
        self.text, self.fail = text, fail

    def _write(self, path: Path) -> None:
        Path(path).write_text(self.text[:2] if self.fail else self.text)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")

    def save(self, path: Path) -> None:
        self._write(path)

    def save_weights(self, path: Path) -> None:
        self._write(path)


def test_a_checkpoint_that_fails_half_way_keeps_the_last_whole_one(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path)
    ck.save(_Model("epoch 1"), {"epoch": 1}, best=True)
    with pytest.raises(OSError):
        ck.save(_Model("epoch 2", fail=True), {"epoch": 2}, best=True)
    assert ck.model_path.read_text() == "epoch 1"
    assert ck.best_path.read_text() == "epoch 1"
    assert json.loads(ck.state_path.read_text()) == {"epoch": 1}
    assert sorted(p.name for p in ck.dir.iterdir()) == [
        "best.weights.h5", "last.keras", "state.json"]
