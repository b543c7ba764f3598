"""Windows, campaign segments and the exact mood payload contract."""

from __future__ import annotations

import json

from device.aggregate import Aggregator, iso
from device.classify import Mood
from device.track import FinishedTrack

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z, 40 s into a minute
MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}
KEYS = ["schema", "device_id", "window_id", "start", "end", "content_id", "model", "labels",
        "viewers", "viewers_total", "detections", "detections_total", "mean_confidence",
        "dwell_s", "frames", "fps"]


def mood(label: str, conf: float) -> Mood:
    return Mood(label, conf, label, ())


def track(tid: int, start: float, end: float, label: str = "happy") -> FinishedTrack:
    return FinishedTrack(tid, start, end, 10, label, 0.9, {label: 9.0})


def agg(**kw: object) -> Aggregator:
    return Aggregator("shop-12", ["happy", "sad"], MODEL, **kw)  # type: ignore[arg-type]


def test_iso() -> None:
    assert iso(T0) == "2026-11-18T11:06:40Z"
    assert iso(T0 + 0.25) == "2026-11-18T11:06:40.250Z"


def test_windows_align_to_the_clock_and_carry_the_contract() -> None:
    a = agg(window_s=60)
    out = []
    for i in range(100):  # 10 s at 10 fps, then a frame at T0 + 30 (next minute)
        out += a.add_frame(T0 + i / 10, [mood("happy", 0.8)] if i % 2 else [])
    assert out == []
    out += a.add_frame(T0 + 30, [mood("sad", 0.6), mood("unknown", 0.4)])
    assert len(out) == 1
    p = out[0]
    assert list(p) == KEYS
    assert p["schema"] == "moodcam/mood/1"
    assert p["window_id"] == "shop-12/2026-11-18T11:06:00Z/-"
    assert p["start"] == "2026-11-18T11:06:40Z"  # the run began mid-window
    assert p["end"] == "2026-11-18T11:07:00Z"
    assert p["content_id"] is None
    assert p["labels"] == ["happy", "sad", "unknown"]
    assert p["detections"] == {"happy": 50, "sad": 0, "unknown": 0}
    assert p["detections_total"] == 50
    assert p["mean_confidence"] == {"happy": 0.8, "sad": None, "unknown": None}
    assert p["viewers"] == {"happy": 0, "sad": 0, "unknown": 0} and p["viewers_total"] == 0
    assert p["dwell_s"] == {"count": 0, "mean": None, "median": None, "max": None,
                            "total": 0.0}
    assert p["frames"] == 100 and p["fps"] == 5.0
    assert "seq" not in p
    json.dumps(p)
    (last,) = a.close(T0 + 40)
    assert last["window_id"] == "shop-12/2026-11-18T11:07:00Z/-"
    assert last["start"] == "2026-11-18T11:07:00Z" and last["end"] == "2026-11-18T11:07:20Z"
    assert last["detections"] == {"happy": 0, "sad": 1, "unknown": 1}
    assert last["mean_confidence"]["unknown"] == 0.4


def test_viewer_counted_once_in_the_window_it_was_last_seen() -> None:
    a = agg(window_s=60, grace_s=2.0)
    a.add_frame(T0, [])
    assert a.add_frame(T0 + 20.5, []) == []  # window closed at T0+20 but held for grace
    a.add_tracks([track(1, T0 + 5, T0 + 19.5)])  # ended just before the boundary
    out = a.add_frame(T0 + 22.0, [])
    assert len(out) == 1
    assert out[0]["viewers"]["happy"] == 1
    assert out[0]["dwell_s"] == {"count": 1, "mean": 14.5, "median": 14.5, "max": 14.5,
                                 "total": 14.5}
    a.add_tracks([track(2, T0 + 21, T0 + 30, "sad"), track(3, T0 + 21, T0 + 40, "unknown")])
    (last,) = a.close(T0 + 41)
    assert last["viewers"] == {"happy": 0, "sad": 1, "unknown": 1}
    assert last["viewers_total"] == 2
    assert last["dwell_s"]["median"] == 14.0 and last["dwell_s"]["max"] == 19.0


def test_campaign_segments_split_a_window_and_returning_content_gets_a_part() -> None:
    a = agg(window_s=60)
    a.set_content("promo-41", T0)  # before the first frame: the first segment takes it
    a.add_frame(T0, [mood("happy", 0.9)])
    out = a.set_content("promo-42", T0 + 5)
    assert [p["content_id"] for p in out] == ["promo-41"]
    assert out[0]["window_id"] == "shop-12/2026-11-18T11:06:00Z/promo-41"
    assert out[0]["end"] == "2026-11-18T11:06:45Z"
    a.add_frame(T0 + 6, [mood("sad", 0.7)])
    out += a.set_content("promo-42", T0 + 7)  # same content again: nothing happens
    out += a.set_content("promo-41", T0 + 10)
    out += a.set_content(None, T0 + 12)
    out += a.add_frame(T0 + 21, [])
    out += a.close(T0 + 25)
    ids = [p["window_id"] for p in out]
    assert ids == ["shop-12/2026-11-18T11:06:00Z/promo-41",
                   "shop-12/2026-11-18T11:06:00Z/promo-42",
                   "shop-12/2026-11-18T11:06:00Z/promo-41#2",
                   "shop-12/2026-11-18T11:06:00Z/-",
                   "shop-12/2026-11-18T11:07:00Z/-"]
    assert out[1]["detections"]["sad"] == 1 and out[1]["start"] == "2026-11-18T11:06:45Z"
    assert [p["content_id"] for p in out] == ["promo-41", "promo-42", "promo-41", None, None]
    # Segments tile the run: each ends where the next starts.
    assert all(out[i]["end"] == out[i + 1]["start"] for i in range(len(out) - 1))


def test_content_carries_over_into_the_next_window() -> None:
    a = agg(window_s=10, content_id="promo-7")
    a.add_frame(T0, [])
    out = a.add_frame(T0 + 25, [])
    assert [p["window_id"].split("/", 1)[1] for p in out] == [
        "2026-11-18T11:06:40Z/promo-7", "2026-11-18T11:06:50Z/promo-7"]
    assert out[1]["frames"] == 0 and out[1]["fps"] == 0.0  # camera down: still reported


def test_poll_closes_windows_without_frames() -> None:
    a = agg(window_s=10)
    assert a.poll(T0) == []  # nothing started yet
    a.add_frame(T0, [])
    assert [p["end"] for p in a.poll(T0 + 10)] == ["2026-11-18T11:06:50Z"]


def test_close_with_nothing_started_emits_nothing() -> None:
    assert agg().close(T0) == []


def test_close_leaves_out_an_empty_sliver_after_the_last_frame() -> None:
    a = agg(window_s=60)
    a.add_frame(T0, [])
    out = a.close(T0 + 20.2)  # 0.2 s into the next window, no frame there
    assert [p["end"] for p in out] == ["2026-11-18T11:07:00Z"]


def test_payloads_validate_against_the_published_schema() -> None:
    from device.payloads import validate_mood

    a = agg(window_s=60, grace_s=1.0)
    a.set_content("promo-1", T0)
    a.add_frame(T0, [mood("happy", 0.9), mood("unknown", 0.3)])
    a.add_tracks([track(1, T0, T0 + 1)])
    out = a.set_content("promo-2", T0 + 3) + a.add_frame(T0 + 4, []) + a.close(T0 + 5)
    assert len(out) == 2
    for i, p in enumerate(out, 1):
        validate_mood({**p, "seq": i})


def test_content_switch_stamped_before_the_last_frame_never_ends_before_start() -> None:
    from device.payloads import validate_mood

    agg = Aggregator("dev", ["happy", "sad"], MODEL, window_s=60)
    agg.add_frame(100.0, [])
    agg.add_frame(101.0, [])
    out = agg.set_content("promo-1", 100.5)  # the announcement's clock lags the camera's
    out += agg.add_frame(102.0, [])
    out += agg.close(103.0)
    assert [p["content_id"] for p in out] == [None, "promo-1"]
    for p in out:
        p["seq"] = 1
        validate_mood(p)
        assert p["end"] >= p["start"]
