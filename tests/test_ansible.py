"""deploy/ansible/install.yml for real, with `connection: local` into a temporary root.

The push playbook runs against real SSH servers in tests/test_push.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modelbundles import current_sha, sha_of

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.shared]


def test_install_playbook_check_mode_then_for_real(tmp_path: Path, yunet_path: Path) -> None:
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) \
        or shutil.which("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook is missing (pip install ansible-core)")
    root = tmp_path / "root"
    inv = tmp_path / "inventory.ini"
    inv.write_text(
        "[moodcam]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[moodcam:vars]\nmoodcam_become=false\n"
        f"moodcam_root={root}\n"
        f"moodcam_install_args=--device-id ansible-test --detector-file {yunet_path}\n")
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "at"),
           "ANSIBLE_REMOTE_TMP": str(tmp_path / "rt")}
    cmd = [playbook, "-i", str(inv), str(ROOT / "deploy" / "ansible" / "install.yml")]

    p = subprocess.run([*cmd, "--check"], capture_output=True, text=True, env=env,
                       timeout=300, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failed=0" in p.stdout
    assert not (root / "opt" / "moodcam" / "venv").exists()  # nothing installed

    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failed=0" in p.stdout and "MQTT topics" in p.stdout
    conf = root / "etc" / "moodcam" / "moodcam.toml"
    assert 'device_id = "ansible-test"' in conf.read_text()
    assert (root / "opt" / "moodcam" / "src" / "deploy" / "install.sh").exists()
    moodcam = root / "opt" / "moodcam" / "venv" / "bin" / "moodcam"
    assert subprocess.run([str(moodcam), "check-config", str(conf)], capture_output=True,
                          timeout=60, check=False).returncode == 0
    assert current_sha(root / "var" / "lib" / "moodcam" / "models") == sha_of(0)
