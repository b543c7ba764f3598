"""Model bundles (format 2): one uncompressed tar carrying a model, its manifest and golden
samples, led by a small index that a signature covers.

    bundle.json     the index: every member's name, size and sha256, in tar order
    bundle.sig      Ed25519 signature of bundle.json's exact bytes (optional)
    manifest.json, model.tflite, golden.npz

`moodcam model install` reads the index and the signature first (both size-capped) and
checks the signature before it parses anything; then it streams each member, refusing one
whose name, type, size or sha256 differ from the index (device/bundleread.py). So one
signature covers every byte that decides what runs: the model, the manifest and the
golden samples. The store keeps bundle.json and bundle.sig beside the files, and the
daemon checks them again (verify_installed) each time it loads a model when a public key
is configured. Format 1 bundles (no index; the signature covered only manifest.json) are
refused: re-export them with `moodcam-train export`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from device.manifest import Manifest, ManifestError, load_manifest, verify_model_file

FORMAT = "moodcam-bundle/2"
INDEX = "bundle.json"
SIGNATURE = "bundle.sig"
MANIFEST = "manifest.json"
MODEL = "model.tflite"
GOLDEN = "golden.npz"
MEMBERS = (MANIFEST, MODEL, GOLDEN)
# Documented limits (docs/operators.md, "Bundle limits"): the shipped model is 97 KB with
# 58 KB of golden samples, so these leave room for models a Pi can run at all.
MAX_INDEX = 16 * 1024
SIGNATURE_BYTES = 64
MAX_MEMBER = {MANIFEST: 256 * 1024, MODEL: 48 * 1024 * 1024, GOLDEN: 8 * 1024 * 1024}
MAX_TOTAL = 64 * 1024 * 1024  # all members together; a bundle file may add tar headers
MAX_FILE = MAX_TOTAL + 64 * 1024
MAX_GOLDEN_SAMPLES = 256
GOLDEN_DTYPES = ("int8", "uint8", "float32")
# int8 kernels differ slightly between runtimes and CPUs (XNNPACK vs reference); a
# golden output more than this many quantisation steps away means a broken model.
GOLDEN_TOLERANCE = 3


class BundleError(ValueError):
    """A bundle that must not be installed; the message says why in one line."""


@dataclass(frozen=True)
class Golden:
    inputs: np.ndarray  # N x H x W x 1, the model's input dtype
    outputs: np.ndarray  # N x labels, the model's raw output dtype


def save_golden(path: Path, golden: Golden) -> None:
    np.savez(path, inputs=golden.inputs, outputs=golden.outputs)


def _read_npy(z: zipfile.ZipFile, name: str) -> np.ndarray:
    """One array of an .npz, refused before allocation if its header promises too much."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise BundleError(f"golden samples lack {name}") from None
    if info.file_size > MAX_MEMBER[GOLDEN]:
        raise BundleError(f"golden samples: {name} unpacks to {info.file_size} bytes, more "
                          f"than the {MAX_MEMBER[GOLDEN]} limit")
    # ZipExtFile stops at the declared size, so a deflate bomb cannot run past it.
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if dtype.name not in GOLDEN_DTYPES or dtype.hasobject:
            raise BundleError(f"golden samples: {name} has dtype {dtype}, not one of "
                              f"{', '.join(GOLDEN_DTYPES)}")
        if not 2 <= len(shape) <= 4 or not 0 < shape[0] <= MAX_GOLDEN_SAMPLES:
            raise BundleError(f"golden samples: {name} has shape {shape} (at most "
                              f"{MAX_GOLDEN_SAMPLES} samples)")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > info.file_size:
            raise BundleError(f"golden samples: {name} declares {shape} {dtype}, more than "
                              f"its {info.file_size} bytes hold")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise BundleError(f"golden samples: {name} is truncated")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def load_golden(path: Path) -> Golden:
    """golden.npz with every size checked before memory is given to it."""
    try:
        if path.stat().st_size > MAX_MEMBER[GOLDEN]:
            raise BundleError(f"golden samples {path.name} exceed {MAX_MEMBER[GOLDEN]} bytes")
        with zipfile.ZipFile(path) as z:
            names = sorted(z.namelist())
            if names != ["inputs.npy", "outputs.npy"]:
                raise BundleError(f"golden samples hold {names}, not inputs and outputs")
            g = Golden(_read_npy(z, "inputs.npy"), _read_npy(z, "outputs.npy"))
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"golden samples {path.name} unreadable: {e}") from e
    if len(g.inputs) != len(g.outputs):
        raise BundleError(f"golden samples: {len(g.inputs)} inputs but {len(g.outputs)} "
                          "outputs")
    return g


def load_signing_key(path: Path) -> bytes:
    """A 32-byte Ed25519 seed stored as 64 hex characters."""
    seed = bytes.fromhex(path.read_text().strip())
    if len(seed) != 32:
        raise ValueError(f"{path}: expected a 32-byte Ed25519 seed in hex")
    return seed


def read_public_key(path: Path) -> str:
    """An Ed25519 public key file: 64 hex digits (what `moodcam-train keygen` writes)."""
    try:
        key = path.read_text().strip()
    except OSError as e:
        raise BundleError(f"public key {path}: {e.strerror or e}") from None
    if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
        raise BundleError(f"public key {path}: not an Ed25519 public key (64 hex digits, "
                          "the .pub file `moodcam-train keygen` writes)")
    return key


def sign(data: bytes, seed: bytes) -> bytes:
    from nacl.signing import SigningKey

    return bytes(SigningKey(seed).sign(data).signature)


def public_key_hex(seed: bytes) -> str:
    from nacl.signing import SigningKey

    return bytes(SigningKey(seed).verify_key).hex()


def verify_signature(data: bytes, signature: bytes, public_key_hex_: str) -> None:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        VerifyKey(bytes.fromhex(public_key_hex_.strip())).verify(data, signature)
    except (BadSignatureError, ValueError) as e:
        raise BundleError("signature does not verify with the configured public key"
                          " (signed by another key, or the bundle was altered)") from e


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    sha256: str


def parse_index(data: bytes) -> list[Entry]:
    """The index's members, checked against the known names and the size limits."""
    try:
        doc: Any = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BundleError(f"{INDEX}: format is not {FORMAT!r}")
        entries = [Entry(str(m["name"]), m["size"], str(m["sha256"])) for m in doc["members"]]
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, BundleError):
            raise
        raise BundleError(f"{INDEX} is not a bundle index: {err}") from None
    if [e.name for e in entries] != list(MEMBERS):
        raise BundleError(f"{INDEX} lists {[e.name for e in entries]}, not {list(MEMBERS)}")
    for e in entries:
        if type(e.size) is not int or not 0 < e.size <= MAX_MEMBER[e.name]:
            raise BundleError(f"{INDEX}: {e.name} size {e.size!r} is outside 1.."
                              f"{MAX_MEMBER[e.name]} bytes")
        if len(e.sha256) != 64 or any(c not in "0123456789abcdef" for c in e.sha256):
            raise BundleError(f"{INDEX}: {e.name} sha256 is not 64 lowercase hex digits")
    if sum(e.size for e in entries) > MAX_TOTAL:
        raise BundleError(f"{INDEX}: members total more than {MAX_TOTAL} bytes")
    return entries


def make_index(model_dir: Path) -> bytes:
    members = []
    for name in MEMBERS:
        data = (model_dir / name).read_bytes()
        members.append({"name": name, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return (json.dumps({"format": FORMAT, "members": members}, indent=1) + "\n").encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_bundle(out: Path, model_dir: Path, signing_seed: bytes | None = None) -> Path:
    """Pack model_dir's manifest.json, model and golden.npz into a format-2 bundle."""
    manifest = load_manifest(model_dir / MANIFEST)
    if manifest.model_file != MODEL:
        raise BundleError(f"cannot bundle: model_file must be {MODEL!r}")
    verify_model_file(manifest, model_dir / manifest.model_file)
    for m in MEMBERS:
        if not (model_dir / m).is_file():
            raise BundleError(f"cannot bundle: {model_dir / m} is missing")
    load_golden(model_dir / GOLDEN)  # what the device would refuse is not shipped
    index = make_index(model_dir)
    parse_index(index)  # within the limits
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, INDEX, index)
        if signing_seed is not None:
            _add(tar, SIGNATURE, sign(index, signing_seed))
        for m in MEMBERS:
            _add(tar, m, (model_dir / m).read_bytes())
    tmp.replace(out)
    return out


def _sha256_limited(f: BinaryIO, limit: int) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := f.read(min(1 << 20, limit + 1 - n)):
        h.update(chunk)
        n += len(chunk)
        if n > limit:
            break
    return h.hexdigest(), n


def verify_installed(model_dir: Path, public_key: str | None) -> Manifest:
    """Check an installed version against its index, and the index's signature when a key
    is given; what the daemon does before it loads a model from the store."""
    try:
        index = _read_capped(model_dir / INDEX, MAX_INDEX)
        if public_key:
            try:
                sig = _read_capped(model_dir / SIGNATURE, SIGNATURE_BYTES)
            except FileNotFoundError:
                raise BundleError(f"{model_dir} is unsigned but a public key is configured"
                                  ) from None
            verify_signature(index, sig, public_key)
        for e in parse_index(index):
            with (model_dir / e.name).open("rb") as f:
                digest, n = _sha256_limited(f, e.size)
            if n != e.size or digest != e.sha256:
                raise BundleError(f"{model_dir / e.name} differs from the bundle index "
                                  f"({n} bytes, sha256 {digest[:12]}…)")
        manifest = load_manifest(model_dir / MANIFEST)
        verify_model_file(manifest, model_dir / manifest.model_file)
    except FileNotFoundError as e:
        raise BundleError(f"{model_dir}: {Path(str(e.filename)).name} is missing (not a "
                          "bundle installed by this moodcam: push a re-exported one)") from None
    except (OSError, ManifestError) as e:
        raise BundleError(str(e)) from e
    return manifest


def _read_capped(path: Path, cap: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise BundleError(f"{path.name} is larger than {cap} bytes")
    return data


def check_golden(run_raw: Callable[[np.ndarray], np.ndarray], golden: Golden) -> None:
    """Run the golden inputs through a loaded model; raise unless outputs match."""
    for i, (x, want) in enumerate(zip(golden.inputs, golden.outputs, strict=True)):
        got = run_raw(x)
        if got.shape != want.shape:
            raise BundleError(f"golden sample {i}: output shape {got.shape} != {want.shape}")
        diff = int(np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))))
        if diff > GOLDEN_TOLERANCE or int(np.argmax(got)) != int(np.argmax(want)):
            raise BundleError(f"golden sample {i}: output differs from the expected one by "
                              f"{diff} steps (model or runtime broken)")
