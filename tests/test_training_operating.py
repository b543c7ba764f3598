"""fit --thresholds-against: happy/sad thresholds that leave no count figure worse than a
reference model's on the same validation faces (training/operating.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.classify import Classifier
from training.camera_eval import camera_faces, device_detector
from training.data import load_splits
from training.decision import DECISION_SEEDS, decide_index, score_rule
from training.operating import (
    HIGHER,
    LOWER,
    face_set,
    face_sets,
    gain_intervals,
    no_worse_thresholds,
    same_split,
)
from training.report import threshold_lines

LABELS = ["happy", "sad", "neutral", "other"]
EMOTIONS = ["happy", "sad", "neutral", "angry"]


def _model(rng: np.random.Generator, sharp: float, n: int = 120
           ) -> tuple[np.ndarray, list[str]]:
    """Softmax outputs whose true label leads by `sharp` logits on average."""
    emotions = [EMOTIONS[i % 4] for i in range(n)]
    logits = rng.normal(0, 1, (n, 4))
    logits[np.arange(n), np.arange(n) % 4] += sharp
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), emotions


def got_at(probs: np.ndarray, emotions: list[str], found: dict[str, float]) -> object:
    th = np.full(4, 0.5)
    th[0], th[1] = found["happy"], found["sad"]
    return score_rule(decide_index(probs, th), emotions, LABELS)


def test_a_sharper_model_gets_thresholds_no_worse_on_any_figure() -> None:
    """The reference sits at a cautious point (0.7: precise, little leak), so the sharper
    model's thresholds must be searched, not taken from anywhere on the grid."""
    rng = np.random.default_rng(0)
    weak, emotions = _model(rng, 1.5, 400)
    strong, _ = _model(rng, 2.5, 400)
    th = np.full(4, 0.5)
    ref_decided = decide_index(weak, np.full(4, 0.7))
    ref = score_rule(ref_decided, emotions, LABELS)
    # Not every point qualifies: at the grid's lowest thresholds it leaks more.
    low = score_rule(decide_index(strong, np.full(4, 0.3)), emotions, LABELS)
    assert low.neutral_leak > ref.neutral_leak
    found = no_worse_thresholds([face_set(strong, emotions, ref_decided)], LABELS, th)
    assert found["references"] == [ref.row()]
    # Each figure's gain at the chosen point lies inside its bootstrap interval.
    for f in (*HIGHER, *LOWER):
        lo, hi = found["gain_intervals_95"][0][f]
        gain = getattr(got_at(strong, emotions, found), f) - getattr(ref, f)
        assert lo <= (gain if f in HIGHER else -gain) <= hi
    assert found["qualifies"]
    th2 = th.copy()
    th2[0], th2[1] = found["happy"], found["sad"]
    got = score_rule(decide_index(strong, th2), emotions, LABELS)
    assert got.row() == found["scores"][0]
    assert all(getattr(got, f) >= getattr(ref, f) for f in HIGHER)
    assert all(getattr(got, f) <= getattr(ref, f) for f in LOWER)


def test_none_when_the_reference_is_better_everywhere() -> None:
    rng = np.random.default_rng(1)
    strong, emotions = _model(rng, 4.0)
    weak, _ = _model(rng, 0.3)
    th = np.full(4, 0.4)
    found = no_worse_thresholds([face_set(weak, emotions, decide_index(strong, th))],
                                LABELS, th)
    assert not found["qualifies"] and found["worst"]["short_by"] > 0
    # Far behind: the whole bootstrap interval of its gain is below zero, and says so.
    lo, hi = _worst_interval(found)
    assert lo <= -found["worst"]["short_by"] <= hi < 0
    # The run's report says so and names the nearest miss, so the engineer knows why.
    text = "\n".join(threshold_lines({"reference": "ref 1", "faces": ["validation crops"],
                                       "result": found}))
    assert "Count-matched: no happy and sad thresholds" in text
    assert f"short by {found['worst']['short_by']:.2%}" in text
    assert f"lies in [{lo:+.2%}, {hi:+.2%}] (95%)." in text
    leak = found["gain_intervals_95"][0]["neutral_leak"]
    assert f"| [{leak[0]:+.2%}, {leak[1]:+.2%}] |" in text


def test_a_miss_the_face_sample_explains_has_an_interval_across_zero() -> None:
    """Two models that differ on a handful of faces: the nearest miss is small and its
    paired bootstrap interval spans zero, so the report can say so."""
    rng = np.random.default_rng(3)
    probs, emotions = _model(rng, 2.0, 800)
    th = np.full(4, 0.5)
    ref = decide_index(probs, th)
    worse = probs.copy()
    neutral = np.flatnonzero(np.asarray(emotions) == "neutral")
    flip = neutral[ref[neutral] == 2][:2]  # two neutral faces the reference kept neutral
    worse[flip] = [0.0, 0.9, 0.1, 0.0]  # now counted sad at any threshold up to 0.9
    found = no_worse_thresholds([face_set(worse, emotions, ref)], LABELS, th)
    assert not found["qualifies"]
    lo, hi = _worst_interval(found)
    assert lo < -found["worst"]["short_by"] / 2 and hi >= 0


def _worst_interval(found: dict) -> list[float]:
    w = found["worst"]
    return list(found["gain_intervals_95"][w["set"]][w["figure"]])


def test_rows_of_one_face_resample_together() -> None:
    """A face found in three seeds' frames is one face, not three: the interval of three
    grouped copies is the interval of one copy, and ungrouped copies would narrow it."""
    rng = np.random.default_rng(4)
    probs, emotions = _model(rng, 1.5, 300)
    ref = decide_index(_model(rng, 2.0, 300)[0], np.full(4, 0.5))
    th = np.full(4, 0.5)
    one = gain_intervals(face_set(probs, emotions, ref), LABELS, th)
    tripled = (np.tile(probs, (3, 1)), emotions * 3, np.tile(ref, 3))
    grouped = gain_intervals(face_set(*tripled, np.tile(np.arange(300), 3)), LABELS, th)
    assert grouped == one and set(one) == {*HIGHER, *LOWER}
    loose, tight = gain_intervals(face_set(*tripled), LABELS, th)["sad_recall"], one["sad_recall"]
    assert loose is not None and tight is not None
    assert loose[1] - loose[0] < 0.7 * (tight[1] - tight[0])


def test_a_reference_that_held_out_other_faces_is_refused() -> None:
    mine = {"seed": 1234, "val_fraction": 0.1, "max_per_class": None, "labels": "hsno"}
    same_split(dict(mine), mine)
    with pytest.raises(ValueError, match="held out other validation faces"):
        same_split({**mine, "seed": 7}, mine)
    with pytest.raises(ValueError, match="labels"):
        same_split({**mine, "labels": "hs"}, mine)


def test_the_camera_faces_of_every_frame_seed_are_pooled(model_dir: Path, fer_zip: Path,
                                                         yunet_path: Path) -> None:
    """The search holds a model to the camera faces of several seeds' frames at once, so
    one seed's synthesis does not decide it (DECISION_SEEDS)."""
    splits, _ = load_splits(fer_zip, drop_twins=False)
    faces_all = splits["test"]  # any faces do: this checks the pooling, not a model
    pick = np.random.default_rng(0).choice(len(faces_all), 90, replace=False)  # all emotions
    images = [faces_all.images[i] for i in pick]
    emotions = [faces_all.emotions[i] for i in pick]
    clf = Classifier.from_dir(model_dir)
    det = device_detector(yunet_path)
    found = [len(list(camera_faces(det, images, np.arange(90), (s,)))) for s in (0, 1, 2)]
    names, sets = face_sets(clf, clf, images, emotions, yunet_path)
    assert DECISION_SEEDS == (0, 1, 2)
    assert names[1] == (f"the same faces through the camera path, frame seeds 0, 1, 2"
                        f" ({sum(found)} found)")
    probs, faces, ref, groups = sets[1]
    assert len(probs) == len(faces) == len(groups) == sum(found)
    # Each row remembers its face: a face found in every seed's frames is one group.
    assert len(set(groups.tolist())) <= 90 and np.bincount(groups).max() <= 3
    # Against itself on the same pooled faces, the reference decides as the model does.
    assert (decide_index(probs, np.asarray(clf.thresholds)) == ref).all()
    names1, sets1 = face_sets(clf, clf, images, emotions, yunet_path, (1,))
    assert len(sets1[1][0]) == found[1] and "frame seeds 1 (" in names1[1]


def test_a_figure_no_resample_defines_has_no_interval() -> None:
    """Tiny validation sets (a smoke run's) can lack a label's faces: the figures it
    defines get no interval, the others still do, and the report says n/a."""
    probs = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.8, 0.05, 0.05], [0.7, 0.2, 0.05, 0.05]])
    emotions = ["happy", "sad", "happy"]  # no neutral face: the leak is undefined
    fs = face_set(probs, emotions, np.array([0, 1, 1]))
    iv = gain_intervals(fs, LABELS, np.full(4, 0.5), resamples=200)
    assert iv["neutral_leak"] is None
    assert iv["happy_recall"] is not None and iv["happy_recall"][0] <= iv["happy_recall"][1]
    found = no_worse_thresholds([fs], LABELS, np.full(4, 0.5))
    text = "\n".join(threshold_lines({"reference": "ref 1", "faces": ["validation crops"],
                                       "result": found}))
    assert "neutral leak" in text and "| n/a |" in text
