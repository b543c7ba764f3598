"""deploy/install.sh for real, into a temporary root prefix: install, re-run, uninstall.

The venv is built from the package index like on a Pi (pip's cache makes repeats quick:
about 20 s for the first install here, a few seconds for a re-run); apt, the system user
and systemd are skipped under --root, which the script says.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.assemble import hostname_device_id
from device.modelstore import ModelStore
from tests.modelbundles import bundle, sha_of

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.shared]


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment, as under sudo: nothing of this test's venv leaks in.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"):
        if k in os.environ:
            env[k] = os.environ[k]
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=500, env=env, check=False)


def test_install_twice_then_uninstall(tmp_path: Path, yunet_path: Path,
                                      astronaut_bgr: np.ndarray) -> None:
    root = tmp_path / "root"
    det = ["--detector-file", str(yunet_path)]

    # A wrong detector file is refused before anything is touched.
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not yunet")
    p = install(root, "--detector-file", str(wrong))
    assert p.returncode == 1 and "sha256 is not YuNet" in p.stderr
    assert not (root / "opt").exists()

    p = install(root, *det)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "--root: skipping apt" in out
    assert "chosen: moodcam 0.1.0" in out and "numpy 1." in out and "opencv 4.11" in out
    assert "picamera2: not available" in out
    assert "not started: --root given" in out
    venv = root / "opt" / "moodcam" / "venv"
    conf = root / "etc" / "moodcam" / "moodcam.toml"
    state = root / "var" / "lib" / "moodcam"
    unit = root / "etc" / "systemd" / "system" / "moodcam.service"
    wants = unit.parent / "multi-user.target.wants" / "moodcam.service"
    assert (venv / "pyvenv.cfg").read_text().count("include-system-site-packages = true")
    assert unit.read_text() == (ROOT / "systemd" / "moodcam.service").read_text()
    assert os.readlink(wants) == "/etc/systemd/system/moodcam.service"
    text = conf.read_text()
    assert f'device_id = "{hostname_device_id()}"' in text
    assert f'dir = "{state}/models/current"' in text
    assert f'path = "{state}/spool.sqlite"' in text
    device_id = text.split('device_id = "')[1].split('"')[0]
    for topic in ("availability", "status", "mood"):
        assert f"moodcam/{device_id}/{topic}" in out
    assert (state / "detector" / yunet_path.name).read_bytes() == yunet_path.read_bytes()
    store = ModelStore(state / "models")
    assert store.current().manifest.model_sha256 == sha_of(0)

    # The installed venv works with the installed config, model and detector.
    moodcam = str(venv / "bin" / "moodcam")
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), astronaut_bgr)
    p = subprocess.run([moodcam, "classify", "--json", "--config", str(conf), str(face)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert [f["label"] for f in json.loads(p.stdout)["faces"]] == ["happy"]

    # An operator edits the config and pushes a model; a re-run (upgrade) keeps both.
    conf.write_text(text.replace("window_s = 60", "window_s = 30"))
    v1 = bundle(tmp_path, "v1", 1)
    p = subprocess.run([moodcam, "model", "install", str(v1), "--config", str(conf)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    (state / "spool.sqlite").write_bytes(b"spooled windows")
    p = install(root, "--no-apt")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"config: keeping {conf}" in p.stdout
    assert "YuNet already in place" in p.stdout and "model: keeping the current one" in p.stdout
    assert "window_s = 30" in conf.read_text()
    assert store.current().manifest.model_sha256 == sha_of(1)

    # An invalid config stops the installer before the service would be (re)started.
    conf.write_text(conf.read_text() + "\nbogus_key = 1\n")
    p = install(root, "--no-apt")
    assert p.returncode == 1
    assert "bogus_key: unknown key" in p.stderr and "is invalid" in p.stderr
    assert "starting" not in p.stdout and "service:" not in p.stdout
    conf.write_text(text)

    p = install(root, "--uninstall")
    assert p.returncode == 0, p.stderr
    assert not (root / "opt" / "moodcam").exists() and not unit.exists()
    assert not wants.exists() and not (state / "models").exists()
    assert conf.exists() and (state / "spool.sqlite").exists()  # kept
    p = install(root, "--uninstall", "--purge")
    assert p.returncode == 0, p.stderr
    assert not conf.parent.exists() and not state.exists()
