"""Real model bundles for the deployment tests, made from a copy of the shipped model.

A second, genuinely different model is the shipped one with its flatbuffer's
`min_runtime_version` string changed: a new sha256, the same outputs. Bad bundles are the
shipped one with one thing broken, as an operator could get them.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from device.bundle import FORMAT, sign, write_bundle
from device.manifest import sha256_file

MODELS = Path(__file__).resolve().parent.parent / "models"
FILES = ("manifest.json", "model.tflite", "golden.npz")


def model_copy(dest: Path, variant: int = 0,
               edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """models/ copied to dest; variant n > 0 is a different model file with the same
    outputs; edit changes the manifest (after the sha256 is set)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copy(MODELS / f, dest / f)
    m = json.loads((dest / "manifest.json").read_text())
    if variant:
        blob = (dest / "model.tflite").read_bytes()
        assert blob.count(b"1.14.0") == 1, "the shipped model changed: update model_copy"
        (dest / "model.tflite").write_bytes(blob.replace(b"1.14.0", f"1.14.{variant}".encode()))
        m["version"] = f"{m['version']}-v{variant}"
        m["model_sha256"] = sha256_file(dest / "model.tflite")
    if edit is not None:
        edit(m)
    (dest / "manifest.json").write_text(json.dumps(m, indent=2))
    return dest


def bundle(tmp: Path, name: str, variant: int = 0,
           edit: Callable[[dict[str, Any]], None] | None = None,
           key: bytes | None = None) -> Path:
    d = model_copy(tmp / f"{name}.d", variant, edit)
    out = tmp / f"{name}.tar"
    if edit is None:
        return write_bundle(out, d, key)
    # write_bundle refuses manifests that do not match their model: pack by hand.
    return pack(out, {f: (d / f).read_bytes() for f in FILES}, key)


def index_of(files: dict[str, bytes]) -> bytes:
    return json.dumps({"format": FORMAT, "members": [
        {"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for n, b in files.items()]}).encode()


def pack(out: Path, files: dict[str, bytes], key: bytes | None = None,
         index: bytes | None = None, members: dict[str, bytes] | None = None,
         mode: Literal["w", "w:gz"] = "w", signature: bytes | None = None) -> Path:
    """A format-2 bundle as an attacker or a buggy tool could make it: the index of
    `files` (or `index`), signed with `key`, followed by `members` (default: `files`)."""
    idx = index if index is not None else index_of(files)
    with tarfile.open(out, mode) as tar:
        entries = [("bundle.json", idx)]
        if key is not None or signature is not None:
            entries.append(("bundle.sig", signature or sign(idx, key or b"")))
        entries += list((members if members is not None else files).items())
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def shipped_files(tmp: Path | None = None, variant: int = 0) -> dict[str, bytes]:
    """The shipped model's files, or (in tmp) those of variant n of it."""
    d = MODELS if variant == 0 or tmp is None else model_copy(tmp / f"files-{variant}", variant)
    return {f: (d / f).read_bytes() for f in FILES}


def golden_off(tmp: Path, name: str) -> Path:
    """A new model whose golden outputs were recorded for another model."""
    d = model_copy(tmp / f"{name}.d", variant=3)
    with np.load(d / "golden.npz") as z:
        inputs, outputs = z["inputs"], z["outputs"]
    np.savez(d / "golden.npz", inputs=inputs, outputs=np.roll(outputs, 1, axis=1))
    return write_bundle(tmp / f"{name}.tar", d)


def sha_of(variant: int = 0) -> str:
    if variant == 0:
        return str(json.loads((MODELS / "manifest.json").read_text())["model_sha256"])
    blob = (MODELS / "model.tflite").read_bytes().replace(b"1.14.0", f"1.14.{variant}".encode())
    return hashlib.sha256(blob).hexdigest()


def current_sha(store: Path) -> str:
    """The model sha256 of the store's current version, which must be a usable model."""
    from device.modelstore import ModelStore

    version = ModelStore(store).current()
    assert version is not None and version.manifest is not None, f"{store}: no usable current"
    return version.manifest.model_sha256
