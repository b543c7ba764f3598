"""Thresholds for a new model that leave no count figure worse than a reference model's.

Count-matched thresholds (training/metrics.py) put each model at its own operating point,
so two models are compared at different trade-offs: a wider model that ranks sad against
neutral better may still leak more neutral faces at its count-matched point. Here the
happy and sad thresholds are searched, on the new model's validation faces, for the point
where sad recall and precision, happy recall and precision are at least the reference's and
the neutral leak at most the reference's, on the same faces (the validation crops and,
with YuNet, the camera path, pooled over several seeds' frames); among such points the one
whose happy and sad counts are nearest the truth is kept. When none qualifies, the nearest
miss is reported instead. Either way each figure's gain over the reference at that point
comes with a paired bootstrap interval: resampling faces (a face found in several seeds'
frames is resampled as one) says whether a gain or a miss is larger than the face sample
alone would move it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from device.classify import Classifier
from training.decision import DECISION_SEEDS, RuleScore, decide_index, score_rule
from training.ensemble import SAME_SPLIT

HIGHER = ("sad_recall", "sad_precision", "happy_recall", "happy_precision")
LOWER = ("neutral_leak",)
GRID = np.round(np.arange(0.30, 0.901, 0.01), 2)  # covers count_thresholds (0.35-0.9)

BOOTSTRAP_RESAMPLES = 1000


class FaceSet(NamedTuple):
    probs: np.ndarray  # the model's, faces x labels
    emotions: np.ndarray  # true emotion per face
    ref: np.ndarray  # the reference's decided label index per face (decide_index)
    groups: np.ndarray  # the original face of each row: rows of one face resample together


def face_set(probs: np.ndarray, emotions: Sequence[str] | np.ndarray, ref: np.ndarray,
             groups: np.ndarray | None = None) -> FaceSet:
    """A FaceSet; without groups, every row is its own face."""
    return FaceSet(probs, np.asarray(emotions), ref,
                   np.arange(len(probs)) if groups is None else np.asarray(groups))


def _gain(s: RuleScore, r: RuleScore, figure: str) -> float:
    """How far `s` is better than `r` on `figure` (< 0: worse)."""
    d = float(getattr(s, figure) - getattr(r, figure))
    return d if figure in HIGHER else -d


def gain_intervals(fs: FaceSet, labels: list[str], thresholds: np.ndarray,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
                   ) -> dict[str, list[float] | None]:
    """Per figure, the 95% paired bootstrap interval of the model's gain over the
    reference at these thresholds: both are scored on the same resampled faces. None
    where no resample defines the figure (a label with no faces)."""
    decided = decide_index(fs.probs, thresholds)
    _, inv = np.unique(fs.groups, return_inverse=True)
    n = int(inv.max()) + 1
    rng = np.random.default_rng(seed)
    figures = (*HIGHER, *LOWER)
    gains = np.empty((resamples, len(figures)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no faces: NaN
        for b in range(resamples):
            picks = np.bincount(rng.integers(0, n, n), minlength=n)[inv]
            rows = np.repeat(np.arange(len(inv)), picks)
            s = score_rule(decided[rows], fs.emotions[rows], labels)
            r = score_rule(fs.ref[rows], fs.emotions[rows], labels)
            gains[b] = [_gain(s, r, f) for f in figures]
    # A resample without a label's faces leaves its figures undefined (NaN): left out.
    out: dict[str, list[float] | None] = {}
    for j, f in enumerate(figures):
        g = gains[:, j][~np.isnan(gains[:, j])]
        out[f] = ([round(float(v), 4) for v in np.percentile(g, [2.5, 97.5])]
                  if len(g) else None)
    return out


def no_worse_thresholds(sets: list[FaceSet], labels: list[str], thresholds: np.ndarray,
                        grid: np.ndarray = GRID) -> dict[str, Any]:
    """The happy and sad thresholds of the best pair that qualifies on every set (the
    model's probabilities on some faces, with the reference's figures on the same faces):
    `qualifies` True. Otherwise the nearest miss (the pair whose worst shortfall is
    smallest), `qualifies` False, with that shortfall in `worst`."""
    hi, si = labels.index("happy"), labels.index("sad")
    refs = [score_rule(fs.ref, fs.emotions, labels) for fs in sets]
    best: tuple[tuple[float, float], dict[str, Any], np.ndarray] | None = None
    miss: tuple[float, dict[str, Any], np.ndarray] | None = None
    for t_h, t_s in itertools.product(grid, grid):
        th = np.asarray(thresholds, np.float64).copy()
        th[hi], th[si] = t_h, t_s
        scores = [score_rule(decide_index(fs.probs, th), fs.emotions, labels) for fs in sets]
        # Per face set and figure: how far it is better than the reference (< 0: worse).
        gains = [(_gain(s, r, f), k, f) for k, (s, r) in enumerate(zip(scores, refs, strict=True))
                 for f in (*HIGHER, *LOWER)]
        point = {"happy": float(t_h), "sad": float(t_s), "scores": [s.row() for s in scores]}
        worst = min(gains)
        if worst[0] < 0:
            if miss is None or worst[0] > miss[0]:
                miss = (worst[0], {**point, "worst": {"set": worst[1], "figure": worst[2],
                                                      "short_by": round(-worst[0], 4)}}, th)
            continue
        # Nearest-true counts first (an analyst reads counts), then the widest margins.
        key = (max(max(abs(s.sad_count_error), abs(s.happy_count_error)) for s in scores),
               -sum(g for g, _, _ in gains))
        if best is None or key < best[0]:
            best = (key, point, th)
    if best is not None:
        chosen, th = {**best[1], "qualifies": True}, best[2]
    else:
        assert miss is not None  # every grid point either qualifies or misses
        chosen, th = {**miss[1], "qualifies": False}, miss[2]
    # How far the face sample alone moves each gain at that point (resampled in pairs).
    intervals = [gain_intervals(fs, labels, th) for fs in sets]
    return {**chosen, "gain_intervals_95": intervals,
            "references": [ref.row() for ref in refs]}


def face_sets(clf: Classifier, ref: Classifier, images: list[np.ndarray],
              emotions: list[str], yunet: Path | None,
              frame_seeds: Sequence[int] = DECISION_SEEDS) -> tuple[list[str], list[FaceSet]]:
    """The faces both models are held to, through the device's int8 path: the validation
    crops, and (with YuNet) the same faces found in camera frames of each frame seed,
    pooled, and cropped by each model's own framing; the frames depend only on their
    seed, so both see the same."""
    from device.align import face_input
    from training.camera_eval import camera_faces, device_detector
    from training.evaluate import classify_faces

    for c in (clf, ref):
        if c.manifest.preprocessing.align != "none":
            raise ValueError(f"--thresholds-against: {c.manifest.version} aligns faces;"
                             " only unaligned models are compared")

    def decided(p: np.ndarray) -> np.ndarray:
        return decide_index(p, np.asarray(ref.thresholds))

    names = [f"validation crops ({len(images)})"]
    sets = [face_set(classify_faces(clf, images), emotions,
                     decided(classify_faces(ref, images)))]
    if yunet is not None:
        # Detected once: both models crop the same boxes, each with its own framing.
        probs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        found: list[str] = []
        groups: list[int] = []
        for i, gray, box, lm in camera_faces(device_detector(yunet), images,
                                             np.arange(len(images)), frame_seeds):
            found.append(emotions[i])
            groups.append(i)
            for c, out in zip((clf, ref), probs, strict=True):
                out.append(c.probabilities(face_input(gray, box, lm, c.manifest.preprocessing)))
        if {"happy", "sad", "neutral"} <= set(found):  # else its figures are undefined
            seeds = ", ".join(map(str, frame_seeds))
            names.append(f"the same faces through the camera path, frame seeds {seeds}"
                         f" ({len(found)} found)")
            sets.append(face_set(np.stack(probs[0]), found, decided(np.stack(probs[1])),
                                 np.asarray(groups)))
    return names, sets


def same_split(ref_options: dict[str, Any], mine: dict[str, Any]) -> None:
    """Refuse a reference whose fit held out other faces: its figures would not compare."""
    keys = (*SAME_SPLIT, "labels")
    a, b = {k: mine.get(k) for k in keys}, {k: ref_options.get(k) for k in keys}
    if a != b:
        raise ValueError(f"--thresholds-against: the reference was fit with {b}, this run"
                         f" with {a}; it held out other validation faces")


def search_against(clf: Classifier, ref: Classifier, images: list[np.ndarray],
                   emotions: list[str], yunet: Path | None,
                   frame_seeds: Sequence[int] = DECISION_SEEDS
                   ) -> tuple[list[str], dict[str, Any]]:
    """The face sets' names and no_worse_thresholds over them, after checking that both
    models held out these faces."""
    same_split(ref.manifest.training.get("options") or {},
               clf.manifest.training.get("options") or {})
    names, sets = face_sets(clf, ref, images, emotions, yunet, frame_seeds)
    return names, no_worse_thresholds(sets, clf.labels, np.asarray(clf.thresholds))


def apply_to_run(run: Path, ref: Path, images: list[np.ndarray], emotions: list[str],
                 yunet: Path | None, frame_seeds: Sequence[int] = DECISION_SEEDS
                 ) -> dict[str, Any]:
    """Rewrite `run`'s manifest with thresholds no worse than `ref`'s on its validation
    faces (face_sets), when such exist; the search's result is kept in the manifest's
    training record either way."""
    from device.manifest import write_manifest

    ref_clf, clf = Classifier.from_dir(ref), Classifier.from_dir(run)
    names, found = search_against(clf, ref_clf, images, emotions, yunet, frame_seeds)
    record = {"reference": f"{ref_clf.manifest.name} {ref_clf.manifest.version}",
              "faces": names, "result": found}
    m = clf.manifest
    upd: dict[str, Any] = {"training": {**m.training, "thresholds_against": record}}
    if found["qualifies"]:
        upd["label_thresholds"] = {**m.label_thresholds, "happy": found["happy"],
                                   "sad": found["sad"]}
    write_manifest(m.model_copy(update=upd), run / "manifest.json")
    return found
