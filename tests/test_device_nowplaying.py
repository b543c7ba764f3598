"""Now-playing announcements: switches bounded by campaign.min_segment_s, bursts are a
fault while they last, logged once at each end."""

from __future__ import annotations

import logging

import pytest

from device.nowplaying import NowPlaying, Switch


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_first_switch_is_immediate_and_stamped_on_arrival() -> None:
    clock = Clock()
    np_ = NowPlaying("idle", 5.0, "t", clock=clock)
    assert np_.poll(1.0) is None and np_.current == "idle"
    np_.announce("promo-42", stamp=10.0)
    clock.t += 0.3
    assert np_.poll(10.3) == Switch("promo-42", 10.0)
    # Nothing playing: the default, not null.
    clock.t += 6
    np_.announce(None, stamp=16.3)
    assert np_.poll(16.4) == Switch("idle", 16.3)
    assert np_.fault() is None


def test_a_flood_makes_at_most_one_switch_per_min_segment(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    np_ = NowPlaying(None, 5.0, "t", clock=clock)
    switches: list[Switch] = []
    with caplog.at_level(logging.INFO, logger="device.nowplaying"):
        for i in range(1000):  # 1,000 alternating ids in 2 s
            np_.announce("a" if i % 2 else "b", stamp=clock.t)
            if (sw := np_.poll(clock.t)) is not None:
                switches.append(sw)
            clock.t += 0.002
        assert switches == [Switch("b", 1000.0)]
        assert np_.fault() is not None and "rate limited: 999" in (np_.fault() or "")
        np_.announce("c", stamp=clock.t)
        while clock.t < 1030:
            clock.t += 0.5
            if (sw := np_.poll(clock.t)) is not None:
                switches.append(sw)
    # The latest announcement took effect once the segment had lasted 5 s, stamped then.
    assert [sw.content for sw in switches[1:]] == ["c"]
    assert 1005.0 <= switches[1].stamp <= 1005.5  # polled every 0.5 s
    assert np_.fault() is None  # quiet for 2 x min_segment_s: the burst is over
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one when the burst starts, one when it ends
    assert "faster than campaign.min_segment_s" in lines[0]
    assert "burst is over" in lines[1] and "1000 switches coalesced" in lines[1]


def test_a_flood_ending_on_the_current_content_switches_nothing() -> None:
    clock = Clock()
    np_ = NowPlaying(None, 5.0, "t", clock=clock)
    np_.announce("a", 0.0)
    assert np_.poll(0.0) == Switch("a", 0.0)
    for cid in ["b", "a", "b", "a"]:
        clock.t += 0.1
        np_.announce(cid, clock.t)
    clock.t += 10
    assert np_.poll(clock.t) is None and np_.current == "a"


def test_junk_is_a_fault_until_quiet() -> None:
    clock = Clock()
    np_ = NowPlaying(None, 2.0, "t", clock=clock)
    np_.reject("JSON nested deeper than 8 levels")
    np_.reject("payload is not UTF-8")
    assert np_.fault() == "2 malformed payloads ignored (last: payload is not UTF-8)"
    clock.t += 3.9
    np_.poll(0)
    assert np_.fault() is not None
    clock.t += 0.2
    np_.poll(0)
    assert np_.fault() is None


def test_reload_applies_a_new_default_and_forgets_an_old_topic() -> None:
    clock = Clock()
    np_ = NowPlaying("idle", 5.0, "t1", clock=clock)
    np_.announce("promo", 1.0)
    assert np_.poll(1.0) == Switch("promo", 1.0)
    np_.reconfigure("idle-2", 5.0, "t1")  # content announced: the default does not matter
    assert np_.poll(2.0) is None
    clock.t += 1
    np_.reconfigure("idle-2", 5.0, "t2")  # a new topic: back to the default at once
    assert np_.poll(3.0) == Switch("idle-2", 3.0)
    np_.reconfigure("idle-3", 5.0, "t2")
    assert np_.poll(4.0) == Switch("idle-3", 4.0)


def test_a_burst_between_two_polls_is_coalesced_and_reported() -> None:
    clock = Clock()
    np_ = NowPlaying(None, 5.0, "t", clock=clock)
    for i in range(100):  # all before the main loop looks: only the last counts
        np_.announce(f"promo-{i % 2}", stamp=float(i))
    assert np_.poll(200.0) == Switch("promo-1", 99.0)
    assert "rate limited: 99 content switches coalesced" in (np_.fault() or "")
