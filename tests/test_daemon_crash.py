"""What `kill -9` (or a power cut) can lose: at most spool.checkpoint_s of the open
window, never silently: a window lost before its first checkpoint leaves a seq gap."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from device.payloads import validate_mood
from device.spool import Spool
from tests.broker import wait_until
from tests.daemonproc import NotifySocket, clear_of_the_hour, finish, start, write_config

pytestmark = pytest.mark.timeout(300)


def hour_window_config(tmp_path: Path, model_dir: Path, checkpoint_s: float) -> Path:
    """A config with one window_s = 3600 window per run: written once the next wall-clock
    hour, where such a window closes, is at least 2 minutes away (waits until then)."""
    clear_of_the_hour()
    cfg = write_config(tmp_path / "c.toml", model_dir, None)
    text = cfg.read_text().replace("window_s = 2", "window_s = 3600")
    cfg.write_text(text.replace("[spool]\n", f"[spool]\ncheckpoint_s = {checkpoint_s}\n"))
    return cfg


def started(tmp_path: Path, cfg: Path, after_ready_s: float
            ) -> subprocess.Popen[str]:
    """A daemon that has been READY (camera open, scenario time 0) for after_ready_s.
    The spool is the daemon's alone while it runs (exclusive lock): tests read it after."""
    notify = NotifySocket(tmp_path / "notify.sock")
    p = start(cfg, env=notify.env(watchdog_s=30))
    try:
        assert wait_until(lambda: "READY=1" in notify.text(), timeout=40), "never ready"
        time.sleep(after_ready_s)
    finally:
        notify.close()
    return p


def crash(p: subprocess.Popen[str]) -> float:
    p.kill()
    t = time.time()
    p.communicate(timeout=10)
    return t


def test_kill_9_mid_window_recovers_it_with_the_viewers_on_screen(
        model_dir: Path, tmp_path: Path) -> None:
    cfg = hour_window_config(tmp_path, model_dir, 1)
    # The sample scenario's first person is on screen from 0 to 8 s: killed at 5 s, the
    # last checkpoint (at most 1 s earlier) counts them while still in view.
    t_kill = crash(started(tmp_path, cfg, 5.0))
    rc, out, err = finish(start(cfg, "--duration", "3", "--json"), timeout=60)
    assert rc == 0, err
    assert "recovered 1 window(s) from the last checkpoint" in err
    with Spool(tmp_path / "spool.sqlite") as spool:
        pending = [w for _, w in spool.pending()]
    for w in pending:
        validate_mood(w)
    first, second = pending
    assert first["seq"] == 1 and first["recovered"] is True
    assert first["frames"] > 0 and first["viewers_total"] >= 1
    end = datetime.fromisoformat(first["end"]).timestamp()
    assert t_kill - 1.5 <= end <= t_kill + 0.1  # at most checkpoint_s (1 s) lost
    assert second["seq"] == 2 and second["recovered"] is False
    assert json.loads(out.splitlines()[-1])["seq"] == 2


def test_kill_9_before_the_first_checkpoint_shows_as_a_seq_gap(
        model_dir: Path, tmp_path: Path) -> None:
    cfg = hour_window_config(tmp_path, model_dir, 600)
    # The window's number is taken (and persisted) when it opens, at the first frame.
    crash(started(tmp_path, cfg, 2.0))
    rc, _, err = finish(start(cfg, "--duration", "2", "--json"), timeout=60)
    assert rc == 0, err
    assert "recovered" not in err
    with Spool(tmp_path / "spool.sqlite") as spool:
        assert [seq for seq, _ in spool.pending()] == [2]  # 1 is the visible loss
