"""The clock interface: monotonic for durations, an injectable wall clock, sync state."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from device.clock import OFFSET_ENV, SystemClock, boot_id, kernel_synchronized


def test_the_offset_file_steps_only_the_wall_clock(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    offset = tmp_path / "offset"
    offset.write_text("10800")
    monkeypatch.setenv(OFFSET_ENV, str(offset))
    c = SystemClock()
    assert abs(c.wall() - time.time() - 10800) < 1
    assert abs(c.monotonic() - time.monotonic()) < 1
    offset.write_text("-3600")
    time.sleep(0.25)  # re-read at most every 0.2 s
    assert abs(c.wall() - time.time() + 3600) < 1
    # A file caught mid-write (empty) or unparsable keeps the last offset; no file, none.
    for text in ("", "not a number"):
        offset.write_text(text)
        time.sleep(0.25)
        assert abs(c.wall() - time.time() + 3600) < 1
    offset.unlink()
    time.sleep(0.25)
    assert abs(c.wall() - time.time()) < 1


def test_sync_state_from_the_file_the_config_or_nothing(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert SystemClock("file", flag).synchronized() == (False, "none")
    flag.touch()
    assert SystemClock("file", flag).synchronized() == (True, "timesyncd")
    assert SystemClock("file", tmp_path).synchronized() == (True, "file")  # another name
    assert SystemClock("always", tmp_path / "absent").synchronized() == (True, "config")
    state = SystemClock("ntp", tmp_path / "absent").synchronized()
    assert state in ((True, "kernel"), (False, "none"))
    assert state[0] == bool(kernel_synchronized())


def test_boot_id_names_this_boot() -> None:
    b = boot_id()
    assert b == boot_id()
    assert b == "unknown" or re.fullmatch("[0-9a-f-]{36}", b)
