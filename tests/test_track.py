"""The tracker counts people, not frames, and gives each one mood by weighted vote."""

from __future__ import annotations

import numpy as np
import pytest

from device.classify import Mood
from device.track import Tracker, iou_matrix, vote


def mood(label: str, conf: float = 0.9) -> Mood:
    return Mood(label, conf, label, ())


def walk(tracker: Tracker, start: float, n: int, box: tuple[float, ...], dx: float = 0.0,
         label: str = "happy", fps: float = 10.0) -> list:
    finished = []
    for i in range(n):
        x, y, w, h = box
        _, done = tracker.update(start + i / fps, [(x + dx * i, y, w, h)], [mood(label)])
        finished += done
    return finished


def test_one_person_standing_is_one_viewer_with_dwell() -> None:
    tr = Tracker(max_age_s=1.0, min_hits=3)
    assert walk(tr, 0.0, 200, (100, 100, 80, 80)) == []  # 20 s in view, nothing ends yet
    assert tr.active == 1
    _, done = tr.update(25.0, [])
    assert len(done) == 1
    t = done[0]
    assert t.label == "happy" and t.hits == 200
    assert t.dwell_s == pytest.approx(19.9)
    assert tr.active == 0


def test_flicker_below_min_hits_is_not_a_viewer() -> None:
    tr = Tracker(min_hits=3, max_age_s=0.5)
    walk(tr, 0.0, 2, (10, 10, 50, 50))
    assert tr.finish_all() == []
    assert tr.discarded == 1


def test_two_people_get_separate_tracks_and_ids() -> None:
    tr = Tracker(min_hits=1)
    ids, _ = tr.update(0.0, [(0, 0, 50, 50), (300, 0, 50, 50)], [mood("happy"), mood("sad")])
    ids2, _ = tr.update(0.1, [(305, 2, 50, 50), (3, 1, 50, 50)], [mood("sad"), mood("happy")])
    assert ids[0] != ids[1]
    assert ids2 == [ids[1], ids[0]]  # matched by overlap, not by order
    done = sorted(tr.finish_all(), key=lambda t: t.track_id)
    assert [t.label for t in done] == ["happy", "sad"]


def test_fast_zoom_without_overlap_keeps_the_track_by_centroid() -> None:
    tr = Tracker(min_hits=1, iou_threshold=0.3, max_distance=0.6)
    tr.update(0.0, [(100, 100, 40, 40)], [mood("happy")])
    # Grown 3x around almost the same centre: IoU ~0.11 < 0.3, centroid distance small.
    ids, _ = tr.update(0.1, [(65, 65, 120, 120)], [mood("happy")])
    assert ids == [1]
    # Far away: a new person, even though the old track is still alive.
    ids, _ = tr.update(0.2, [(500, 400, 40, 40)], [mood("happy")])
    assert ids == [2]


def test_track_ends_after_max_age_not_before() -> None:
    tr = Tracker(min_hits=1, max_age_s=1.0)
    tr.update(0.0, [(0, 0, 50, 50)], [mood("happy")])
    assert tr.update(1.0, [])[1] == []
    ids, done = tr.update(1.5, [(0, 0, 50, 50)], [mood("happy")])
    assert len(done) == 1 and ids == [2]  # the same place later is a new viewer


def test_weighted_vote_rules() -> None:
    assert vote({}, 0.5) == "unknown"
    assert vote({"happy": 3.0, "sad": 1.0}, 0.5) == "happy"
    assert vote({"happy": 1.0, "sad": 1.0}, 0.5) == "unknown"  # a tie dominates nothing
    assert vote({"happy": 0.4, "sad": 0.35, "angry": 0.25}, 0.5) == "unknown"
    assert vote({"happy": 0.4, "sad": 0.35, "angry": 0.25}, 0.4) == "happy"


def test_vote_is_confidence_weighted_and_unknown_abstains() -> None:
    tr = Tracker(min_hits=1)
    seq = [mood("sad", 0.56)] * 4 + [mood("happy", 0.99)] * 3 + [mood("unknown", 0.3)] * 20
    for i, m in enumerate(seq):
        tr.update(i * 0.1, [(0, 0, 60, 60)], [m])
    (t,) = tr.finish_all()
    # 3 x 0.99 = 2.97 beats 4 x 0.56 = 2.24 and holds 57% of the labelled weight.
    assert t.label == "happy"
    assert t.confidence == pytest.approx(0.99)
    assert t.hits == len(seq)


def test_only_unknown_observations_make_an_unknown_viewer() -> None:
    tr = Tracker(min_hits=1)
    for i in range(5):
        tr.update(i * 0.1, [(0, 0, 60, 60)], [mood("unknown", 0.4)])
    (t,) = tr.finish_all()
    assert t.label == "unknown" and t.confidence == pytest.approx(0.4)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[5, 0, 10, 10]], float)
    m = iou_matrix(a, b)
    assert m.shape == (2, 1)
    assert m[0, 0] == pytest.approx(50 / 150)
    assert m[1, 0] == 0


def test_box_mood_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        Tracker().update(0.0, [(0, 0, 1, 1)], [mood("happy"), mood("sad")])


def test_thirty_people_at_once() -> None:
    tr = Tracker(min_hits=2)
    boxes = [(c * 100, r * 90, 60, 60) for r in range(5) for c in range(6)]
    for i in range(5):
        ids, _ = tr.update(i * 0.1, boxes, [mood("happy")] * 30)
    assert sorted(ids) == list(range(1, 31))
    assert len(tr.finish_all()) == 30
