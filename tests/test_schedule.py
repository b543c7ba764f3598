"""The work-saving schedule: which frames are detected, which faces classified."""

from __future__ import annotations

import numpy as np

from device.classify import Mood
from device.schedule import DetectGate, Schedule, detections_needed
from device.track import Tracker, settled


def mood(label: str, conf: float = 0.9) -> Mood:
    return Mood(label, conf, label, ())


def frame(level: int) -> np.ndarray:
    return np.full((480, 640, 3), level, np.uint8)


def test_the_default_schedule_is_every_face_of_every_frame() -> None:
    assert Schedule().every_frame
    assert not Schedule(detect_every=2).every_frame
    assert not Schedule(classify_every=10).every_frame


def test_detections_needed_span_what_min_hits_frames_span() -> None:
    assert detections_needed(3, 1) == 3
    assert detections_needed(3, 2) == 2  # frames 0 and 2
    assert detections_needed(3, 3) == 2  # frames 0 and 3
    assert detections_needed(5, 2) == 3  # frames 0, 2, 4
    assert detections_needed(1, 4) == 1


def test_gate_detects_every_nth_frame_and_at_once_on_a_scene_change() -> None:
    gate = DetectGate(3, scene_change=12.0)
    assert [gate.due(frame(100)) for _ in range(7)] == [True, False, False, True,
                                                        False, False, True]
    assert gate.scene_cuts == 0
    assert not gate.due(frame(105))  # small drift (lighting): carried
    assert gate.due(frame(160))  # a cut: detected at once, counted
    assert gate.scene_cuts == 1
    assert not gate.due(frame(160))  # the new scene is the reference now
    every = DetectGate(1, scene_change=12.0)
    assert all(every.due(frame(100)) for _ in range(5))


def test_gate_without_scene_check_only_counts_frames() -> None:
    gate = DetectGate(2, scene_change=0.0)
    assert [gate.due(frame(v)) for v in (0, 255, 0, 255)] == [True, False, True, False]


def test_settled_means_one_contrary_full_vote_cannot_flip_it() -> None:
    assert not settled({}, 0.5)
    assert not settled({"happy": 1.0, "sad": 1.0}, 0.5)
    assert not settled({"happy": 0.9}, 0.5)  # 0.9 vs 1.0 more for another label
    assert settled({"happy": 2.7}, 0.5)
    assert settled({"happy": 2.7, "sad": 0.5}, 0.5)
    assert not settled({"happy": 1.8, "sad": 0.9}, 0.5)  # 1.8 vs 1.9 would flip


def test_a_track_is_classified_at_once_until_settled_then_every_k_frames() -> None:
    tr = Tracker(min_hits=1)
    box = [(100, 100, 80, 80)]
    classified = []
    for i in range(30):
        (tid,), _ = tr.associate(i / 10, box)
        if tr.due(tid, classify_every=10, settle_after=3):
            tr.record(tid, mood("happy"))
            classified.append(i)
        assert tr.mood_of(tid).label == "happy"
    # Frames 0-2 settle it (3 classifications of 0.9), then once every 10 frames.
    assert classified == [0, 1, 2, 12, 22]
    (done,) = tr.finish_all()
    assert done.label == "happy" and done.hits == 30


def test_an_unsettled_track_keeps_being_classified() -> None:
    tr = Tracker(min_hits=1)
    n = 0
    for i in range(12):
        (tid,), _ = tr.associate(i / 10, [(0, 0, 50, 50)])
        if tr.due(tid, classify_every=10, settle_after=3):
            tr.record(tid, mood("happy" if i % 2 else "sad"))
            n += 1
    assert n == 12 and tr.mood_of(tid).label == "unknown"


def test_carried_frames_add_no_hits_and_keep_the_last_detected_boxes() -> None:
    tr = Tracker(min_hits=2, max_age_s=1.0)
    ids, _ = tr.associate(0.0, [(0, 0, 50, 50), (300, 0, 50, 50)])
    tr.associate(0.2, [(2, 0, 50, 50)])  # the second face was missed
    carried, boxes = tr.carry(0.3)
    assert carried == ids[:1] and boxes.tolist() == [[2.0, 0.0, 50.0, 50.0]]
    done = {t.track_id: t for t in tr.finish_all()}
    # Carried frames extend the sighting, not the hits; the missed face is not carried.
    assert done[ids[0]].hits == 2 and done[ids[0]].end == 0.3
    assert ids[1] not in done  # one hit: below min_hits
