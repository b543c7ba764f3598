"""What `kill -9` (or a power cut) can lose: at most spool.checkpoint_s of the open
window, never silently: a window lost before its first checkpoint leaves a seq gap."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from device.payloads import validate_mood
from device.spool import Spool
from tests.broker import wait_until
from tests.daemonproc import finish, start, write_config

pytestmark = pytest.mark.timeout(150)


def config(tmp_path: Path, model_dir: Path, checkpoint_s: float) -> Path:
    cfg = write_config(tmp_path / "c.toml", model_dir, None)
    text = cfg.read_text().replace("window_s = 2", "window_s = 3600")
    cfg.write_text(text.replace("[spool]\n", f"[spool]\ncheckpoint_s = {checkpoint_s}\n"))
    return cfg


def checkpoint(tmp_path: Path) -> list[dict[str, Any]]:
    try:
        with sqlite3.connect(tmp_path / "spool.sqlite") as db:
            rows = db.execute("SELECT payload FROM checkpoint ORDER BY seq").fetchall()
    except sqlite3.Error:
        return []
    return [json.loads(r[0]) for r in rows]


def test_kill_9_mid_window_recovers_it_with_the_viewers_on_screen(
        model_dir: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, model_dir, 1)
    p = start(cfg)
    try:
        # The sample scenario's first person is on screen for its first 8 s: wait for a
        # checkpoint that counts them while they are still in view.
        assert wait_until(lambda: any(w["viewers_total"] >= 1 for w in checkpoint(tmp_path)),
                          timeout=40), "no checkpoint with a viewer"
        p.kill()
        t_kill = time.time()
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)
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
    cfg = config(tmp_path, model_dir, 600)
    p = start(cfg)
    try:
        # The window's number is taken (and persisted) when it opens.
        def opened() -> bool:
            try:
                with Spool(tmp_path / "spool.sqlite") as s:
                    return s.next_seq() == 2
            except sqlite3.Error:
                return False
        assert wait_until(opened, timeout=40)
        time.sleep(1)
        p.kill()
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)
    rc, _, err = finish(start(cfg, "--duration", "2", "--json"), timeout=60)
    assert rc == 0, err
    assert "recovered" not in err
    with Spool(tmp_path / "spool.sqlite") as spool:
        assert [seq for seq, _ in spool.pending()] == [2]  # 1 is the visible loss
