"""Model bundles: one tar file carrying a model, its manifest and golden samples.

Training writes bundles; `moodcam model install` reads and verifies them before a model
ever reaches the running daemon. The optional Ed25519 signature covers manifest.json,
which pins the model by sha256, so one signature vouches for everything in the bundle.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.manifest import Manifest, ManifestError, load_manifest, verify_model_file

MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
SIGNATURE = "manifest.json.sig"
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


def load_golden(path: Path) -> Golden:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Golden(z["inputs"], z["outputs"])
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"golden samples {path.name} unreadable: {e}") from e


def load_signing_key(path: Path) -> bytes:
    """A 32-byte Ed25519 seed stored as 64 hex characters."""
    seed = bytes.fromhex(path.read_text().strip())
    if len(seed) != 32:
        raise ValueError(f"{path}: expected a 32-byte Ed25519 seed in hex")
    return seed


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
                          " (signed by another key, or the manifest was altered)") from e


def write_bundle(out: Path, model_dir: Path, signing_seed: bytes | None = None) -> Path:
    """Pack manifest.json, the model and golden.npz from model_dir into one tar."""
    manifest = load_manifest(model_dir / MANIFEST)
    verify_model_file(manifest, model_dir / manifest.model_file)
    members = [MANIFEST, manifest.model_file, GOLDEN]
    for m in members:
        if not (model_dir / m).is_file():
            raise BundleError(f"cannot bundle: {model_dir / m} is missing")
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w") as tar:
        for m in members:
            tar.add(model_dir / m, arcname=m)
        if signing_seed is not None:
            sig = sign((model_dir / MANIFEST).read_bytes(), signing_seed)
            info = tarfile.TarInfo(SIGNATURE)
            info.size = len(sig)
            tar.addfile(info, io.BytesIO(sig))
    tmp.replace(out)
    return out


def extract_bundle(bundle: Path, dest: Path, public_key: str | None = None) -> Manifest:
    """Unpack into dest (which must not exist yet) and verify everything but the runtime.

    Checks the tar's integrity, member names, the signature (required when a public key
    is given), the manifest's schema and the model's size and sha256.
    """
    try:
        with tarfile.open(bundle, "r:*") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            unexpected = set(names) - {MANIFEST, GOLDEN, SIGNATURE, "model.tflite"}
            if unexpected:
                raise BundleError(f"bundle has unexpected members: {sorted(unexpected)}")
            for needed in (MANIFEST, GOLDEN):
                if needed not in names:
                    raise BundleError(f"bundle lacks {needed}")
            # Plain files with the known names, once each, written by hand: tarfile's
            # extraction filters arrived in 3.11.4 and the Pi's Python (bookworm) is 3.11.2.
            if any(not m.isfile() for m in members) or len(set(names)) != len(names):
                raise BundleError(f"bundle members must be plain files, once each: {names}")
            dest.mkdir(parents=True)
            for member in members:
                src = tar.extractfile(member)
                assert src is not None  # a regular file
                with src, (dest / member.name).open("wb") as out:
                    shutil.copyfileobj(src, out)
    except FileNotFoundError as e:
        raise BundleError(f"bundle not found: {bundle}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"bundle {bundle.name} is not a readable tar (truncated upload?):"
                          f" {e}") from e
    if public_key:
        sig_path = dest / SIGNATURE
        if not sig_path.exists():
            raise BundleError("bundle is unsigned but a public key is configured")
        verify_signature((dest / MANIFEST).read_bytes(), sig_path.read_bytes(), public_key)
    try:
        manifest = load_manifest(dest / MANIFEST)
        if (dest / manifest.model_file).parent != dest:
            raise ManifestError(f"model_file {manifest.model_file!r} is not a plain file name")
        verify_model_file(manifest, dest / manifest.model_file)
    except ManifestError as e:
        raise BundleError(str(e)) from e
    return manifest


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
