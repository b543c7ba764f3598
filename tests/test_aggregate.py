"""Windows, campaign segments, clock steps and the exact mood payload contract.

The aggregator runs on a monotonic timeline; `offset` (wall minus monotonic) stamps it.
Here T0 stands for monotonic times whose offset is 0 unless a test steps the clock.
"""

from __future__ import annotations

import json
from datetime import datetime

from device.aggregate import REPLAY_STREAM, Aggregator, iso
from device.classify import Mood
from device.track import FinishedTrack

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z, 40 s into a minute
MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}
KEYS = ["schema", "device_id", "window_id", "seq", "stream", "start", "end", "content_id",
        "model", "labels", "viewers", "viewers_total", "detections", "detections_total",
        "mean_confidence", "dwell_s", "frames", "fps", "clock", "recovered"]
S = REPLAY_STREAM


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
    assert p["schema"] == "moodcam/mood/2"
    assert p["window_id"] == f"shop-12/{S}/1" and p["seq"] == 1 and p["stream"] == S
    assert p["clock"] == "synced" and p["recovered"] is False
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
    json.dumps(p)
    (last,) = a.close(T0 + 40)
    assert last["window_id"] == f"shop-12/{S}/2"
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


def test_campaign_segments_split_a_window_each_with_its_own_number() -> None:
    a = agg(window_s=60)
    a.set_content("promo-41", T0)  # before the first frame: the first segment takes it
    a.add_frame(T0, [mood("happy", 0.9)])
    out = a.set_content("promo-42", T0 + 5)
    assert [p["content_id"] for p in out] == ["promo-41"]
    assert out[0]["window_id"] == f"shop-12/{S}/1"
    assert out[0]["end"] == "2026-11-18T11:06:45Z"
    a.add_frame(T0 + 6, [mood("sad", 0.7)])
    out += a.set_content("promo-42", T0 + 7)  # same content again: nothing happens
    out += a.set_content("promo-41", T0 + 10)
    out += a.set_content(None, T0 + 12)
    out += a.add_frame(T0 + 21, [])
    out += a.close(T0 + 25)
    # Returning content, no content ("-" before) and the next window: distinct ids,
    # numbered in the order the segments opened.
    assert [p["window_id"] for p in out] == [f"shop-12/{S}/{i}" for i in range(1, 6)]
    assert [p["start"][11:19] for p in out] == ["11:06:40", "11:06:45", "11:06:50",
                                                 "11:06:52", "11:07:00"]
    assert out[1]["detections"]["sad"] == 1 and out[1]["start"] == "2026-11-18T11:06:45Z"
    assert [p["content_id"] for p in out] == ["promo-41", "promo-42", "promo-41", None, None]
    # Segments tile the run: each ends where the next starts.
    assert all(out[i]["end"] == out[i + 1]["start"] for i in range(len(out) - 1))


def test_content_carries_over_into_the_next_window() -> None:
    a = agg(window_s=10, content_id="promo-7")
    a.add_frame(T0, [])
    out = a.add_frame(T0 + 25, [])
    assert [(p["start"], p["content_id"]) for p in out] == [
        ("2026-11-18T11:06:40Z", "promo-7"), ("2026-11-18T11:06:50Z", "promo-7")]
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
    for p in out:
        validate_mood(p)


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
        validate_mood(p)
        assert p["end"] > p["start"]


def _span(p: dict[str, object]) -> float:
    return (datetime.fromisoformat(str(p["end"])) -
            datetime.fromisoformat(str(p["start"]))).total_seconds()


def _run_with_step(step_s: float) -> list[dict[str, object]]:
    """20 s of frames at 2 fps in 10 s windows, the wall clock stepped by step_s at +7 s."""
    from device.payloads import validate_mood

    a = agg(window_s=10, offset=0.0)
    out = []
    for i in range(40):
        m = T0 + i / 2
        offset = step_s if i / 2 >= 7 else 0.0
        out += a.set_clock(m, offset, True)
        out += a.add_frame(m, [mood("happy", 0.9)])
    out += a.close(T0 + 20)
    for p in out:
        validate_mood(p)
    return out


def test_a_clock_step_of_any_size_splits_the_window_once_and_never_inflates() -> None:
    for step in (3 * 3600.0, 5 * 365.25 * 86400, -3600.0):
        out = _run_with_step(step)
        # 20 s of real time: the window open at the step ends there, the next starts at
        # the new wall time, and no window is invented for the jump.
        # 07-47 before the step, 47-50 and 50-00 (the next aligned window) after it.
        assert len(out) == 3, (step, [(p["start"], p["end"]) for p in out])
        assert sum(_span(p) for p in out) == 20.0
        assert sum(int(p["frames"]) for p in out) == 40  # type: ignore[call-overload]
        assert all(_span(p) > 0 for p in out)
        assert [p["seq"] for p in out] == [1, 2, 3]
        assert out[0]["end"] == "2026-11-18T11:06:47Z"
        assert out[1]["start"] == iso(T0 + 7 + step)
        # After the step the windows align to the new wall clock again.
        assert str(out[2]["start"]).endswith("0Z")


def test_a_step_noticed_after_a_window_boundary_never_marches_windows() -> None:
    """The step is noticed (set_clock) after the open window's end has passed with no
    frame since: the windows up to that moment close on the old clock, and the step
    invents none (once found by tests/test_daemon_time.py: 2 s windows marched through
    the 3 h gap, an empty window per window length, as the issue describes)."""
    for step in (3 * 3600.0, -3600.0):
        a = agg(window_s=2, offset=0.0)
        out = a.add_frame(T0 + 0.5, [])  # window 40-42 open
        out += a.set_clock(T0 + 2.5, step, True)  # 42 passed without a frame
        for i in range(6):
            out += a.add_frame(T0 + 3 + i, [])
        out += a.close(T0 + 9)
        assert len(out) <= 9 / 2 + 3, (step, [(p["start"], p["end"]) for p in out])
        assert sum(_span(p) for p in out) <= 9.0
        assert [p["seq"] for p in out] == list(range(1, len(out) + 1))


def test_small_drift_below_the_tolerance_does_not_split() -> None:
    a = agg(window_s=10)
    out = []
    for i in range(30):
        out += a.set_clock(T0 + i / 2, 0.5 if i > 5 else 0.0, True)
        out += a.add_frame(T0 + i / 2, [])
    assert len(out) == 1 and out[0]["end"] == "2026-11-18T11:06:50Z"


def test_a_step_before_any_frame_restamps_the_empty_segment_keeping_its_number() -> None:
    a = agg(window_s=10)
    a.add_frame(T0, [])
    out = a.poll(T0 + 10)  # window 1 closed; window 2 (number 2) open, nothing in it yet
    out += a.set_clock(T0 + 10, 3600.0, True)
    out += a.add_frame(T0 + 11, []) + a.close(T0 + 12)
    assert [p["seq"] for p in out] == [1, 2]
    assert out[1]["start"] == iso(T0 + 3610) and out[1]["end"] == iso(T0 + 3612)


def test_unsynced_segments_are_flagged_and_numbers_come_from_the_callable() -> None:
    numbers = iter(range(41, 50))
    a = agg(window_s=10, synced=False, stream="abcdef0123456789", seq=lambda: next(numbers))
    a.add_frame(T0, [])
    out = a.add_frame(T0 + 10, [])
    assert out[0]["clock"] == "unsynced"
    assert out[0]["window_id"] == "shop-12/abcdef0123456789/41"
    assert a.spans[41] == (T0, T0 + 10)  # the monotonic span, for restamping


def test_a_dropped_sliver_gives_its_number_back() -> None:
    a = agg(window_s=60)
    a.add_frame(T0, [])
    a.close(T0 + 20.2)  # the sliver took number 2 and gave it back
    a.add_frame(T0 + 100, [])
    (p,) = a.close(T0 + 101)
    assert p["seq"] == 2


def test_snapshot_counts_open_windows_and_viewers_on_screen_as_recovered() -> None:
    a = agg(window_s=10, grace_s=2.0)
    a.add_frame(T0, [mood("happy", 0.9)])
    a.add_frame(T0 + 10.5, [])  # window 1 closed, held for grace; window 2 open
    snap = a.snapshot(T0 + 11, [track(7, T0 + 1, T0 + 9)])
    assert [p["seq"] for p, _, _ in snap] == [1, 2]
    first, second = snap[0][0], snap[1][0]
    assert first["recovered"] is True and first["viewers_total"] == 1
    assert second["end"] == iso(T0 + 11) and second["viewers_total"] == 0
    # The live aggregator is untouched: the track is counted once when it really ends.
    a.add_tracks([track(7, T0 + 1, T0 + 9)])
    out = a.close(T0 + 12)
    assert [p["viewers_total"] for p in out] == [1, 0]
    assert all(p["recovered"] is False for p in out)
