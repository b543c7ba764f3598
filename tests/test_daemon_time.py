"""Time and identity in a running `moodcam run`: wall-clock steps, an unsynchronised
start, and window ids that stay unique across reloads, restarts and a wiped spool.

The wall clock of the daemon process is stepped through MOODCAM_CLOCK_OFFSET_FILE
(device/clock.py); its monotonic clock is the real one.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device.clock import OFFSET_ENV
from device.payloads import validate_mood, validate_status
from tests.broker import Broker, Subscriber
from tests.daemonproc import (
    DEV,
    clear_of_the_hour,
    daemon,
    finish,
    moods,
    start,
    statuses,
    terminate,
    write_config,
)

pytestmark = pytest.mark.timeout(150)
YEAR = 365.25 * 86400


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def check_windows(got: list[dict[str, Any]]) -> None:
    """Every window valid, ids unique, numbers contiguous in one stream."""
    for m in got:
        validate_mood(m)
        assert ts(m["end"]) > ts(m["start"])
    assert len({m["window_id"] for m in got}) == len(got)
    assert len({m["stream"] for m in got}) == 1
    assert sorted(m["seq"] for m in got) == list(range(1, len(got) + 1))


@pytest.mark.broker
def test_clock_steps_under_a_running_daemon(mosquitto: Broker, model_dir: Path,
                                            tmp_path: Path) -> None:
    """+3 h, +5 years, then -1 h: each step ends the open window once, the next starts
    at the new wall time; no window is invented for the jump, none is empty in time."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    steps = [3 * 3600.0, 3 * 3600.0 + 5 * YEAR, -3600.0]
    t_launch = time.monotonic()
    with daemon(write_config(tmp_path / "c.toml", model_dir, mosquitto.port),
                env={OFFSET_ENV: str(offset)}) as p:
        assert sub.wait_for(lambda: len(moods(sub)) >= 2, timeout=40), p.stderr
        for step in steps:
            offset.write_text(str(step))
            time.sleep(5)
        rc, _, err = terminate(p)
        elapsed = time.monotonic() - t_launch
    assert rc == 0 and "Traceback" not in err, err
    assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability")[-1:] == [b"stopped"])
    got = sorted(moods(sub), key=lambda m: m["seq"])
    check_windows(got)
    # Each step shows as one jump between consecutive windows, by the step's size.
    jumps = [ts(b["start"]) - ts(a["end"]) for a, b in itertools.pairwise(got)]
    big = [j for j in jumps if abs(j) > 60]
    deltas = [steps[0], steps[1] - steps[0], steps[2] - steps[1]]
    assert len(big) == 3, jumps
    for j, d in zip(big, deltas, strict=True):
        assert abs(j - d) < 3, (j, d)
    # No more windows than real time passed (2 s windows, one extra per step split,
    # the partial first and last), and their durations add up to real time.
    assert len(got) <= elapsed / 2 + 3 + 2
    total = sum(ts(m["end"]) - ts(m["start"]) for m in got)
    assert total <= elapsed
    for s in statuses(sub):
        validate_status(s)
        assert s["uptime_s"] >= 0 and s["clock"] == {"synchronized": True, "source": "config"}
    sub.close()


@pytest.mark.broker
def test_unsynced_start_holds_windows_then_restamps_them(
        mosquitto: Broker, model_dir: Path, tmp_path: Path) -> None:
    """A Pi booting with last year's time: windows are counted and held, not
    published; once NTP steps the clock and says synchronised they go out restamped
    from the monotonic clock, at the right times."""
    offset = tmp_path / "offset"
    offset.write_text(str(-YEAR))
    synced = tmp_path / "ntp-ok"
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/#"])
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port,
                       clock=f'[clock]\ntrust = "file"\nsync_file = "{synced}"\n')
    with daemon(cfg, env={OFFSET_ENV: str(offset)}) as p:
        t_start = time.time()
        assert sub.wait_for(lambda: any(s["spool"]["held"] >= 2 for s in statuses(sub)),
                            timeout=40), p.stderr
        assert moods(sub) == []  # nothing published with an unknown time
        s = statuses(sub)[-1]
        assert s["clock"] == {"synchronized": False, "source": "none"}
        offset.write_text("0")  # NTP steps the clock ...
        time.sleep(0.5)
        synced.touch()  # ... and timesyncd says so
        assert sub.wait_for(lambda: any(m["clock"] == "synced" for m in moods(sub)),
                            timeout=20), p.stderr
        rc, _, err = terminate(p)
    assert rc == 0 and "Traceback" not in err, err
    assert sub.wait_for(lambda: sub.on(f"moodcam/{DEV}/availability")[-1:] == [b"stopped"])
    got = sorted(moods(sub), key=lambda m: m["seq"])
    check_windows(got)
    clocks = [m["clock"] for m in got]
    n = clocks.count("restamped")
    assert n >= 2 and clocks[:n] == ["restamped"] * n
    assert set(clocks[n:]) == {"synced"}
    # Restamped to the real time: nothing from a year ago, nothing in the future.
    for m in got:
        assert t_start - 3 <= ts(m["start"]) < ts(m["end"]) <= time.time() + 1, m
    last = statuses(sub)[-1]
    assert last["clock"]["synchronized"] is True and last["clock"]["source"] == "file"
    assert last["spool"]["held"] == 0
    sub.close()


def test_windows_held_too_long_are_published_flagged_unsynced(
        model_dir: Path, tmp_path: Path) -> None:
    from device.spool import Spool

    cfg = write_config(tmp_path / "c.toml", model_dir, None,
                       clock=f'[clock]\ntrust = "file"\nsync_file = "{tmp_path / "no"}"\n'
                       "hold_unsynced_s = 0\n")
    rc, _, err = finish(start(cfg, "--duration", "8", "--json"), timeout=60)
    assert rc == 0, err
    with Spool(tmp_path / "spool.sqlite") as spool:
        pending = spool.pending()
        assert spool.held() <= 2  # the last ones, closed less than a second ago
    assert len(pending) >= 2 and {p["clock"] for _, p in pending} == {"unsynced"}


@pytest.mark.timeout(300)  # clear_of_the_hour may wait two minutes
def test_ids_stay_unique_across_restarts_in_one_window_and_a_wiped_spool(
        model_dir: Path, tmp_path: Path) -> None:
    clear_of_the_hour()  # "the same clock window every time"
    cfg = write_config(tmp_path / "c.toml", model_dir, None)
    cfg.write_text(cfg.read_text().replace("window_s = 2", "window_s = 3600"))
    runs = []
    for wipe in (False, False, True):
        if wipe:
            for f in tmp_path.glob("spool.sqlite*"):
                f.unlink()
        rc, out, err = finish(start(cfg, "--duration", "3", "--json"), timeout=60)
        assert rc == 0, err
        runs.append([json.loads(line) for line in out.splitlines()])
    a, b, c = (r[-1] for r in runs)
    # The same clock window (one hour) every time, yet three ids.
    assert len({m["window_id"] for r in runs for m in r}) == sum(map(len, runs))
    assert a["stream"] == b["stream"] != c["stream"]
    assert b["seq"] > a["seq"] and c["seq"] == 1


@pytest.mark.broker
def test_reloads_and_content_ids_never_repeat_an_id(mosquitto: Broker, model_dir: Path,
                                                    tmp_path: Path) -> None:
    """SIGHUP mid-window, and the content ids that used to collide: "-" (the id of
    no content) and "x#2" (the id of x's second part in a window)."""
    topic = "signage/screen-1/now_playing"
    cfg = write_config(tmp_path / "c.toml", model_dir, mosquitto.port,
                       campaign=f'[campaign]\ntopic = "{topic}"\n')
    cfg.write_text(cfg.read_text().replace("window_s = 2", "window_s = 3600"))
    sub = Subscriber(mosquitto, [f"moodcam/{DEV}/mood"])
    with daemon(cfg) as p:
        time.sleep(4)
        for content in ("-", "x", "y", "x", "x#2"):
            sub.client.publish(topic, content, qos=1).wait_for_publish(5)
            time.sleep(1.5)
        for _ in range(2):
            p.send_signal(signal.SIGHUP)
            time.sleep(2.5)
        rc, _, err = terminate(p)
    assert rc == 0 and "Traceback" not in err, err
    assert sub.wait_for(lambda: len(moods(sub)) >= 5, timeout=10)
    got = moods(sub)
    check_windows(got)
    contents = [m["content_id"] for m in got]
    assert {"-", "x", "x#2"} <= set(contents), contents
    assert err.count("reloaded: model") == 2
