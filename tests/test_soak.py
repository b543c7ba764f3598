"""The soak's short form, as anyone runs it (`deploy/soak.py --minutes 2`): a real daemon
and a real mosquitto through a now-playing flood, broker restarts and crashes, clock
steps each way, a reload and kill -9; no duplicate id, no schema failure, only the
documented loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.broker, pytest.mark.timeout(400)]


def test_soak_short_form(model_dir: Path, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "deploy" / "soak.py"), "--minutes", "2",
                        "--model-dir", str(model_dir), "--keep", str(tmp_path)],
                       capture_output=True, text=True, timeout=380, check=False)
    assert p.returncode == 0, p.stderr[-5000:]
    report = json.loads(p.stdout)
    print(report)
    assert report["problems"] == []
    assert report["kills"] >= 1 and report["windows"] >= 30
    for event in ("flood", "broker-restart", "broker-crash", "clock-forward", "clock-back",
                  "daemon-kill", "reload"):
        assert event in report["events"], event
