"""`fit --stop-by`: when a run has room for one more epoch before a session ends."""

from __future__ import annotations

import datetime as dt

import pytest

from training.deadline import MARGIN_S, SLACK, parse_stop_by, room_for_epoch


def test_stop_by_takes_a_full_date_in_local_time_or_a_named_zone() -> None:
    local = dt.datetime(2026, 12, 5, 4, 20).astimezone().timestamp()
    assert parse_stop_by("2026-12-05 04:20") == local
    assert parse_stop_by(" 2026-12-05T04:20 ") == local
    utc = dt.datetime(2026, 12, 5, 4, 20, tzinfo=dt.UTC).timestamp()
    assert parse_stop_by("2026-12-05T04:20Z") == utc
    assert parse_stop_by("2026-12-05 06:20+02:00") == utc


@pytest.mark.parametrize("text", ["04:20", "2026-12-05", "tomorrow", ""])
def test_stop_by_refuses_a_bare_time_or_date_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match=r"--stop-by .*not a date and time.*2026-12-05 04:20"):
        parse_stop_by(text)


def test_room_for_an_epoch_like_the_last_with_slack_and_margin() -> None:
    deadline, epoch = 10_000.0, 1_000.0
    last_start = deadline - epoch * SLACK - MARGIN_S  # the latest time one still fits
    assert room_for_epoch(last_start, deadline, epoch)
    assert not room_for_epoch(last_start + 1, deadline, epoch)
    assert room_for_epoch(last_start + 1, deadline, epoch * 0.99)
    assert not room_for_epoch(deadline + 1, deadline, 0.0)
