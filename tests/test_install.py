"""deploy/install.sh for real, into a temporary root prefix: install, re-run, uninstall.

The venv is built from the package index like on a Pi (pip's cache makes repeats quick:
about 20 s for the first install here, a few seconds for a re-run); apt, the system user
and systemd are skipped under --root, which the script says.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.assemble import hostname_device_id
from tests.modelbundles import bundle, current_sha, sha_of

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.shared]


def install(root: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    # A clean environment, as under sudo: nothing of this test's venv leaks in.
    clean = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **(env or {})}
    for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"):
        if k in os.environ:
            clean[k] = os.environ[k]
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=500, env=clean, check=False)


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
    assert current_sha(state / "models") == sha_of(0)

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
    assert current_sha(state / "models") == sha_of(1)

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


def _fake_systemd(d: Path, restart_ok: bool) -> Path:
    """systemctl/journalctl stand-ins (CI containers run no systemd): they log their calls
    and fail `restart` when asked to, as a unit whose daemon exits does."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "systemctl").write_text(
        "#!/bin/sh\n"
        f'echo "systemctl $*" >> {d}/calls\n'
        f'[ "$1" = restart ] && exit {0 if restart_ok else 1}\nexit 0\n')
    (d / "journalctl").write_text(
        "#!/bin/sh\n"
        f'echo "journalctl $*" >> {d}/calls\n'
        'echo "moodcam[42]: moodcam: error: camera: no camera at /dev/video0"\n')
    for f in ("systemctl", "journalctl"):
        (d / f).chmod(0o755)
    return d


def test_installer_faults(tmp_path: Path, yunet_path: Path) -> None:
    """A failed start, a wrong or unreachable detector download and a wheel whose sha256
    changed all stop the installer with exit 1 and say why."""
    root = tmp_path / "root"
    det = root / "var" / "lib" / "moodcam" / "detector" / yunet_path.name
    p = install(root, "--detector-file", str(yunet_path))
    assert p.returncode == 0, p.stdout + p.stderr

    # The unit does not start: exit 1 with the journal's last lines.
    fake = _fake_systemd(tmp_path / "bad-systemd", restart_ok=False)
    p = install(root, "--no-apt", env={"MOODCAM_INSTALL_SYSTEMD": str(fake)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "camera: no camera at /dev/video0" in p.stderr
    assert "moodcam failed to start" in p.stderr
    assert "journalctl -u moodcam -n 30 --no-pager" in (fake / "calls").read_text()
    fake = _fake_systemd(tmp_path / "good-systemd", restart_ok=True)
    p = install(root, "--no-apt", env={"MOODCAM_INSTALL_SYSTEMD": str(fake)})
    assert p.returncode == 0 and "starting moodcam" in p.stdout, p.stderr

    # A broker with a public address gets through the unit's IPAddressDeny=any by a
    # drop-in written from the config; back on the local network, the drop-in goes.
    conf = root / "etc" / "moodcam" / "moodcam.toml"
    dropin = root / "etc" / "systemd" / "system" / "moodcam.service.d" / "broker.conf"
    text = conf.read_text()
    conf.write_text(text.replace('host = "localhost"', 'host = "8.8.8.8"'))
    p = install(root, "--no-apt")
    assert p.returncode == 0, p.stderr
    assert "IPAddressAllow=8.8.8.8" in dropin.read_text().splitlines()[-1]
    conf.write_text(text)
    p = install(root, "--no-apt")
    assert p.returncode == 0 and not dropin.exists(), p.stderr

    # A detector that is not YuNet (a mirror, a proxy, a moved branch): an error, unless
    # the operator asks for the Haar cascade.
    det.unlink()
    wrong = tmp_path / "wrong.onnx"
    wrong.write_bytes(b"not yunet")
    p = install(root, "--no-apt", "--yunet-url", wrong.as_uri())
    assert p.returncode == 1
    assert "sha256 " in p.stderr and "is not 8f2383e4" in p.stderr and "--allow-haar" in p.stderr
    assert not det.exists()
    p = install(root, "--no-apt", "--yunet-url", (tmp_path / "absent.onnx").as_uri())
    assert p.returncode == 1 and "(download failed)" in p.stderr
    p = install(root, "--no-apt", "--yunet-url", wrong.as_uri(), "--allow-haar")
    assert p.returncode == 0, p.stderr
    assert "--allow-haar: the Haar" in p.stdout and not det.exists()
    p = install(root, "--no-apt", "--yunet-url", yunet_path.as_uri())
    assert p.returncode == 0 and det.read_bytes() == yunet_path.read_bytes(), p.stderr
    assert det.parent.stat().st_uid == 0 and not det.parent.stat().st_mode & 0o022

    # A wheel whose sha256 differs from the lock file is refused (a copy of the source with
    # one hash changed, as a tampered index or wheelhouse would look to pip).
    src = tmp_path / "src"
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "device", "models", "deploy", "systemd"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, src / part)
    reqs = src / "deploy" / "requirements-pi.txt"
    text = reqs.read_text()
    block = text[text.index("\npaho-mqtt=="):]
    digest = block.split("--hash=sha256:")[1][:64]
    reqs.write_text(text.replace(digest, "0" * 64))
    p = install(tmp_path / "root2", "--source", str(src), "--detector-file", str(yunet_path))
    assert p.returncode == 1
    assert "could not install the pinned dependencies" in p.stderr
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in p.stderr


def test_requirements_pin_every_device_dependency_with_hashes() -> None:
    """deploy/requirements-pi.txt covers pyproject's device dependencies (and the litert
    extra) with numpy<2 and OpenCV 4.11, each pinned, with a hash per platform wheel."""
    import re
    import tomllib

    text = (ROOT / "deploy" / "requirements-pi.txt").read_text()
    pins = dict(re.findall(r"(?m)^([a-z0-9-]+)==(\S+) \\", text))
    blocks = re.split(r"(?m)^(?=[a-z0-9-]+==)", text)[1:]
    assert len(blocks) == len(pins) and all("--hash=sha256:" in b for b in blocks)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in [*project["dependencies"], *project["optional-dependencies"]["litert"]]:
        name = re.split(r"[<>=!\[ ]", dep)[0].lower()
        assert name in pins, name
    assert pins["numpy"].startswith("1.") and pins["opencv-python-headless"].startswith("4.11.")
    # Compiled packages carry one wheel per platform: aarch64 (the Pi) and x86_64 (here).
    for b in blocks:
        if b.startswith(("numpy==", "opencv-python-headless==", "pydantic-core==", "cffi==")):
            assert b.count("--hash=") >= 2, b
    tfl = (ROOT / "deploy" / "requirements-pi-tflite.txt").read_text()
    assert "tflite-runtime==2.14.0" in tfl and tfl.count("--hash=") >= 2
