"""The attacks of issue 11 on model bundles, each against a real store and the real CLI.

Every refused bundle must leave the store as it was (same `current`, no new entries) and
say why in one line; the ones that used to fill the disk or the memory (sparse members,
compression bombs, a golden.npz promising 381 MB) must be refused before any member is
written or any array allocated.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.assemble import StartupError, load_classifier
from device.bundle import MAX_MEMBER, BundleError, load_golden, public_key_hex, sign
from device.config import load_config
from device.modelstore import ModelStore
from tests.modelbundles import bundle, index_of, pack, sha_of, shipped_files
from tests.test_modelstore import error_line, model, state, write_config

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def dev(tmp_path: Path) -> dict[str, Any]:
    """A device requiring signatures, with a signed shipped model as its first version."""
    seed = os.urandom(32)
    pub = tmp_path / "signing.pub"
    pub.write_text(public_key_hex(seed) + "\n")
    store = tmp_path / "models"
    cfg = write_config(tmp_path, store, f'public_key_file = "{pub}"')
    rc, _, err = model("install", str(bundle(tmp_path, "v0", key=seed)), "--config", str(cfg))
    assert rc == 0, err
    return {"cfg": str(cfg), "store": ModelStore(store), "tmp": tmp_path, "seed": seed}


@pytest.fixture
def plain(tmp_path: Path) -> dict[str, Any]:
    """A device without a public key (the worst case: anyone's bundle gets this far)."""
    store = tmp_path / "models"
    cfg = write_config(tmp_path, store)
    assert model("install", str(bundle(tmp_path, "v0")), "--config", str(cfg))[0] == 0
    return {"cfg": str(cfg), "store": ModelStore(store), "tmp": tmp_path}


def refused(dev: dict[str, Any], b: Path, expected: str, *flags: str, code: int = 1) -> None:
    before = state(dev["store"])
    rc, out, err = model("install", str(b), "--config", dev["cfg"], *flags)
    assert rc == code and out == "", err
    assert expected in error_line(err)
    assert state(dev["store"]) == before  # nothing new, nothing left behind


# -- unsigned, other keys, old format --------------------------------------------------------
def test_unsigned_bundle_with_a_key_is_refused_whatever_the_flags(dev: dict[str, Any]) -> None:
    unsigned = bundle(dev["tmp"], "u", 1)
    refused(dev, unsigned, "bundle is unsigned but a public key is configured")
    refused(dev, unsigned, "--allow-unsigned refused: a public key is configured",
            "--allow-unsigned", code=2)
    other = bundle(dev["tmp"], "o", 1, key=os.urandom(32))
    refused(dev, other, "signature does not verify")
    # Without a configured key the flag does what it says.
    (dev["tmp"] / "nokey").mkdir()
    cfg = write_config(dev["tmp"] / "nokey", dev["tmp"] / "store2")
    rc, _, err = model("install", str(unsigned), "--config", str(cfg), "--allow-unsigned")
    assert rc == 0, err


def test_format_1_bundle_is_refused_with_the_fix(dev: dict[str, Any]) -> None:
    old = dev["tmp"] / "old.tar"
    with tarfile.open(old, "w") as tar:
        for name, data in shipped_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    refused(dev, old, "is format 1 (no bundle.json)")


# -- the signature covers the golden samples --------------------------------------------------
def _one_sample_golden() -> bytes:
    with np.load(io.BytesIO(shipped_files()["golden.npz"])) as z:
        inputs, outputs = z["inputs"][:1], z["outputs"][:1]
    buf = io.BytesIO()
    np.savez(buf, inputs=inputs, outputs=outputs)
    return buf.getvalue()


def test_swapped_golden_in_a_signed_bundle_is_refused(dev: dict[str, Any]) -> None:
    files = shipped_files()
    swapped = {**files, "golden.npz": _one_sample_golden()}
    # The signed index, the other golden: the member's sha256 differs from the index.
    b = pack(dev["tmp"] / "swap.tar", files, dev["seed"], members=swapped)
    refused(dev, b, "golden.npz has 4612 bytes in the tar, the index says 57912")
    same_size = bytearray(files["golden.npz"])
    same_size[-200] ^= 0xFF
    b = pack(dev["tmp"] / "flip.tar", files, dev["seed"],
             members={**files, "golden.npz": bytes(same_size)})
    refused(dev, b, "golden.npz sha256")
    # A new index for the new golden, with the old signature: the signature fails.
    forged = pack(dev["tmp"] / "forged.tar", swapped,
                  signature=sign(index_of(files), dev["seed"]))
    refused(dev, forged, "signature does not verify")


# -- disk and memory exhaustion ---------------------------------------------------------------
def test_sparse_member_is_refused_before_it_is_written(plain: dict[str, Any]) -> None:
    d = plain["tmp"] / "sparse"
    d.mkdir()
    files = shipped_files()
    (d / "bundle.json").write_bytes(index_of(files))
    (d / "manifest.json").write_bytes(files["manifest.json"])
    with (d / "model.tflite").open("wb") as f:  # 186 MB that take a few KB in a sparse tar
        f.truncate(186 * 1024 * 1024)
        f.write(b"x")
    (d / "golden.npz").write_bytes(files["golden.npz"])
    b = plain["tmp"] / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", str(b), "-C", str(d),
                    "bundle.json", "manifest.json", "model.tflite", "golden.npz"], check=True)
    assert b.stat().st_size < 200_000
    refused(plain, b, "model.tflite is a sparse file")


def test_compressed_bundle_and_gzip_bomb_are_refused(plain: dict[str, Any]) -> None:
    b = plain["tmp"] / "bomb.tar.gz"
    with gzip.open(b, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("bundle.json")
        info.size = 200 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert b.stat().st_size < 400_000
    refused(plain, b, "is gzip-compressed")


def test_member_sizes_are_capped_before_reading(plain: dict[str, Any]) -> None:
    files = shipped_files()
    # The tar header claims 200 MB where the index says 97 KB (and the file is small).
    b = plain["tmp"] / "claims.tar"
    with tarfile.open(b, "w") as tar:
        for name, data in [("bundle.json", index_of(files)), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = 200 * 1024 * 1024 if name == "model.tflite" else len(data)
            tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors))
            if name != "model.tflite":
                tar.fileobj.write(data + bytes(-len(data) % 512))
            else:
                break
    refused(plain, b, "model.tflite has 209715200 bytes in the tar, the index says")
    big = {**files, "model.tflite": b"\0" * (MAX_MEMBER["model.tflite"] + 1)}
    refused(plain, pack(plain["tmp"] / "big.tar", big), "model.tflite size")
    huge = plain["tmp"] / "huge.tar"
    with huge.open("wb") as f:
        f.truncate(80 * 1024 * 1024)
    refused(plain, huge, "more than the 67174400 limit")


def _bomb_npz(samples: int) -> bytes:
    """An .npz whose inputs unpack to samples x 64 x 64 int8 zeros, deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, shape in (("inputs.npy", (samples, 64, 64, 1)), ("outputs.npy", (samples, 4))):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "|i1", "fortran_order": False, "shape": shape})
            with z.open(name, "w", force_zip64=True) as f:
                f.write(header.getvalue())
                n = int(np.prod(shape))
                chunk = bytes(1 << 24)
                while n > 0:
                    f.write(chunk[:min(n, len(chunk))])
                    n -= len(chunk)
    return buf.getvalue()


def test_oversize_golden_is_refused_without_allocating(dev: dict[str, Any]) -> None:
    bomb = _bomb_npz(93_000)  # 381 MB of inputs
    assert len(bomb) < 500_000
    path = dev["tmp"] / "bomb.npz"
    path.write_bytes(bomb)
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the forking parent's peak across
    # exec, so a pytest process that loaded TensorFlow would be measured instead.
    code = ("import re, sys\nfrom pathlib import Path\n"
            "from device.bundle import BundleError, load_golden\n"
            "try:\n    load_golden(Path(sys.argv[1]))\nexcept BundleError as e:\n"
            "    print(e)\n"
            "print(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])\n")
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, check=True)
    message, rss_kb = p.stdout.splitlines()
    assert "unpacks to 380928128 bytes" in message and "more than the 8388608 limit" in message
    assert int(rss_kb) < 200_000, f"{rss_kb} KB peak"
    # In a signed bundle (a compromised or buggy training machine) the install refuses it.
    files = {**shipped_files(dev["tmp"], 1), "golden.npz": bomb}
    refused(dev, pack(dev["tmp"] / "gbomb.tar", files, dev["seed"]), "more than the")
    # A header promising more than the file holds.
    lie = dev["tmp"] / "lie.npz"
    lie.write_bytes(_bomb_npz(1))
    raw = lie.read_bytes()
    with zipfile.ZipFile(lie) as z:
        inputs = z.read("inputs.npy").replace(b"(1, 64, 64, 1)", b"(9, 64, 64, 1)")
        outputs = z.read("outputs.npy")
    with zipfile.ZipFile(lie, "w") as z:
        z.writestr("inputs.npy", inputs)
        z.writestr("outputs.npy", outputs)
    assert lie.read_bytes() != raw
    with pytest.raises(BundleError, match="more than its 4224 bytes hold"):
        load_golden(lie)


# -- members that are not plain files, or not where they belong --------------------------------
def _tar_with(tmp: Path, name: str, tweak: str) -> Path:
    files = shipped_files()
    out = tmp / f"{name}.tar"
    with tarfile.open(out, "w") as tar:
        entries: list[tuple[str, bytes]] = [("bundle.json", index_of(files)), *files.items()]
        if tweak == "duplicate manifest":
            entries.insert(2, ("manifest.json", files["manifest.json"]))
        if tweak == "extra member":
            entries.append(("evil.sh", b"#!/bin/sh\n"))
        for n, data in entries:
            info = tarfile.TarInfo(n)
            if n == "model.tflite":
                if tweak == "path traversal":
                    info.name = "../model.tflite"
                elif tweak == "absolute path":
                    info.name = "/tmp/model.tflite"
                elif tweak == "hardlink":
                    info.type, info.linkname = tarfile.LNKTYPE, "/etc/shadow"
                elif tweak == "fifo":
                    info.type = tarfile.FIFOTYPE
                elif tweak == "directory":
                    info.type = tarfile.DIRTYPE
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out


MEMBER_CASES = {
    "path traversal": "'../model.tflite' where 'model.tflite' belongs",
    "absolute path": "'/tmp/model.tflite' where 'model.tflite' belongs",
    "hardlink": "model.tflite is tar type",
    "fifo": "model.tflite is tar type",
    "directory": "model.tflite is tar type",
    "duplicate manifest": "'manifest.json' where 'model.tflite' belongs",
    "extra member": "members after the indexed ones: 'evil.sh'",
}


@pytest.mark.parametrize("case", list(MEMBER_CASES))
def test_members_must_be_the_indexed_plain_files(tmp_path: Path, case: str) -> None:
    store = tmp_path / "models"
    cfg = write_config(tmp_path, store)
    assert model("install", str(bundle(tmp_path, "v0")), "--config", str(cfg))[0] == 0
    dev = {"cfg": str(cfg), "store": ModelStore(store)}
    refused(dev, _tar_with(tmp_path, case.replace(" ", "-"), case), MEMBER_CASES[case])
    assert not (tmp_path / "model.tflite").exists() and not Path("/tmp/model.tflite").exists()


# -- the daemon checks the signature each time it loads a model -------------------------------
def test_daemon_refuses_a_tampered_or_unsigned_installed_model(dev: dict[str, Any]) -> None:
    cfg = load_config(Path(dev["cfg"]))
    assert load_classifier(cfg).manifest.model_sha256 == sha_of(0)
    version = dev["store"].current().path
    golden = version / "golden.npz"
    good = golden.read_bytes()
    golden.write_bytes(_one_sample_golden())  # as root: what a store-level swap would do
    with pytest.raises(StartupError, match=r"golden\.npz differs from the bundle index"):
        load_classifier(cfg)
    golden.write_bytes(good)
    sig = (version / "bundle.sig").read_bytes()
    (version / "bundle.sig").unlink()
    with pytest.raises(StartupError, match="unsigned but a public key is configured"):
        load_classifier(cfg)
    (version / "bundle.sig").write_bytes(bytes(64))
    with pytest.raises(StartupError, match="signature does not verify"):
        load_classifier(cfg)
    (version / "bundle.sig").write_bytes(sig)
    assert load_classifier(cfg).manifest.model_sha256 == sha_of(0)


def _wait_for(proc: subprocess.Popen[str], lines: list[str], text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in ln for ln in lines):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


@pytest.mark.timeout(240)
def test_running_daemon_checks_the_signature_at_reload_and_start(dev: dict[str, Any]) -> None:
    """A real `moodcam run` (sample camera): a version tampered with after install is
    refused at SIGHUP (the old model keeps running) and at the next start (exit 1)."""
    tmp: Path = dev["tmp"]
    cfg = Path(dev["cfg"])
    cfg.write_text(cfg.read_text() + '[camera]\nsource = "sample"\nmax_fps = 3.0\n'
                   f'[spool]\npath = "{tmp / "spool.sqlite"}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "device.cli", "run", "--config", str(cfg)]
    d = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp, env=env)
    lines: list[str] = []
    err = d.stderr
    assert err is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(err.readline, "")))
    reader.start()
    try:
        assert _wait_for(d, lines, "model moodcam", 90), "".join(lines)
        golden = dev["store"].current().path / "golden.npz"
        golden.write_bytes(_one_sample_golden())
        d.send_signal(signal.SIGHUP)
        assert _wait_for(d, lines, "reload failed", 60), "".join(lines)
        assert d.poll() is None  # still running, with the model it had
        failed = next(ln for ln in lines if "reload failed" in ln)
        assert "golden.npz differs from the bundle index" in failed
    finally:
        d.terminate()
        d.wait(timeout=30)
        reader.join()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=120,
                       check=False)
    assert p.returncode == 1
    assert "model refused" in p.stderr and "golden.npz differs" in p.stderr
