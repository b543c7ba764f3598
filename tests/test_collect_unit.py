"""systemd/moodcam-collect.service: a unit systemd accepts, running the collector as the docs
say (fixed client id, SIGTERM to stop, unprivileged, state under /var/lib)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collect_support import ROOT

UNIT = ROOT / "systemd" / "moodcam-collect.service"


def test_collector_unit_file_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    for key in ("EnvironmentFile=/etc/moodcam/collect.env",
                "--mqtt ${MOODCAM_MQTT} --db ${MOODCAM_DB} --client-id moodcam-collect-%H",
                "KillSignal=SIGTERM", "Restart=on-failure", "DynamicUser=yes",
                "StateDirectory=moodcam-collect", "ProtectSystem=strict",
                "NoNewPrivileges=yes"):
        assert key in text, key
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (deploy/test.sh installs systemd)")
    exe = Path(sys.executable).with_name("moodcam-collect")
    if not exe.exists():
        exe = Path(shutil.which("true") or "/bin/true")
    env = tmp_path / "collect.env"
    env.write_text("MOODCAM_MQTT=127.0.0.1:1883\nMOODCAM_DB=sqlite:///tmp/x.db\n")
    unit = tmp_path / "moodcam-collect.service"
    unit.write_text(text.replace("/opt/moodcam-analyst/bin/moodcam-collect", str(exe))
                    .replace("/etc/moodcam/collect.env", str(env)))
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
