"""Unpacking a format-2 bundle: the signature first, then each member streamed and checked.

Order, each step refusing with one line and before anything more is written:
the file is a regular file within MAX_FILE bytes and not compressed; the first member is
bundle.json (at most MAX_INDEX bytes); bundle.sig follows when the bundle is signed, and
with a public key configured it must exist and verify over bundle.json's bytes before the
index is parsed; then each member named by the index arrives in the index's order as a
plain file (no links, devices, directories or sparse files) of exactly the indexed size,
copied into the destination while its sha256 is computed and compared; nothing may follow
the last one. The destination is a directory descriptor, so the caller decides where the
bounded temporary area is and nothing is written through a path.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

from device.bundle import (
    FORMAT,
    INDEX,
    MANIFEST,
    MAX_FILE,
    MAX_INDEX,
    MODEL,
    SIGNATURE,
    SIGNATURE_BYTES,
    BundleError,
    parse_index,
    verify_signature,
)
from device.manifest import Manifest, ManifestError, parse_manifest

COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz",
              b"\x28\xb5\x2f\xfd": "zstd"}
PLAIN = (tarfile.REGTYPE, tarfile.AREGTYPE)


def _plain(member: tarfile.TarInfo, name: str) -> None:
    if member.name != name:
        raise BundleError(f"bundle member {member.name!r} where {name!r} belongs "
                          "(members out of order, unexpected or duplicated)")
    if member.type not in PLAIN or member.sparse is not None:
        kind = "a sparse file" if member.sparse is not None or member.type == \
            tarfile.GNUTYPE_SPARSE else f"tar type {member.type!r}"
        raise BundleError(f"bundle members must be plain files, once each: {name} is {kind}")


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, cap: int) -> bytes:
    if member.size > cap:
        raise BundleError(f"{member.name} has {member.size} bytes, more than the {cap} limit")
    f = tar.extractfile(member)
    assert f is not None  # a plain file
    data = f.read(cap + 1)
    if len(data) != member.size:
        raise BundleError(f"{member.name} is truncated")
    return data


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, dest_fd: int, size: int) -> str:
    """Stream a member into dest as a new file; its sha256. Never writes past `size`."""
    if member.size != size:
        raise BundleError(f"{member.name} has {member.size} bytes in the tar, the index "
                          f"says {size}")
    src = tar.extractfile(member)
    assert src is not None
    out = os.open(member.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                  dir_fd=dest_fd)
    h, n = hashlib.sha256(), 0
    try:
        while chunk := src.read(min(1 << 20, size - n)):
            h.update(chunk)
            os.write(out, chunk)
            n += len(chunk)
        os.fsync(out)
    finally:
        os.close(out)
    if n != size:
        raise BundleError(f"{member.name} is truncated ({n} of {size} bytes)")
    return h.hexdigest()


def _write(dest_fd: int, name: str, data: bytes) -> None:
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                  dir_fd=dest_fd)
    try:
        os.write(out, data)
        os.fsync(out)
    finally:
        os.close(out)


def unpack(bundle: Path, dest_fd: int, public_key: str | None) -> Manifest:
    """Verify and unpack into the (empty) directory dest_fd; see the module's docstring."""
    try:
        with bundle.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BundleError(f"bundle {bundle.name} is not a regular file")
            if st.st_size > MAX_FILE:
                raise BundleError(f"bundle {bundle.name} has {st.st_size} bytes, more than "
                                  f"the {MAX_FILE} limit")
            head = f.read(8)
            for magic, kind in COMPRESSED.items():
                if head.startswith(magic):
                    raise BundleError(f"bundle {bundle.name} is {kind}-compressed; bundles "
                                      "are plain tar files (moodcam-train export writes them)")
            f.seek(0)
            return _unpack(tarfile.open(fileobj=f, mode="r|"), bundle, dest_fd, public_key)
    except FileNotFoundError as e:
        raise BundleError(f"bundle not found: {bundle}") from e
    except (tarfile.TarError, EOFError) as e:
        raise BundleError(f"bundle {bundle.name} is not a readable tar (truncated upload?):"
                          f" {e}") from e
    except OSError as e:
        raise BundleError(f"bundle {bundle.name}: {e.strerror or e}") from e


def _unpack(tar: tarfile.TarFile, bundle: Path, dest_fd: int, public_key: str | None
            ) -> Manifest:
    first = tar.next()
    if first is None:
        raise BundleError(f"bundle {bundle.name} is an empty tar")
    if first.name != INDEX:
        if first.name in (MANIFEST, MODEL, "golden.npz", "manifest.json.sig"):
            raise BundleError(f"bundle {bundle.name} is format 1 (no {INDEX}); this moodcam "
                              f"reads {FORMAT} only: re-export it with `moodcam-train export`")
        raise BundleError(f"bundle {bundle.name} does not start with {INDEX}")
    _plain(first, INDEX)
    index = _read_small(tar, first, MAX_INDEX)
    member = tar.next()
    signature = None
    if member is not None and member.name == SIGNATURE:
        _plain(member, SIGNATURE)
        signature = _read_small(tar, member, SIGNATURE_BYTES)
        member = tar.next()
    if public_key:
        if signature is None:
            raise BundleError("bundle is unsigned but a public key is configured")
        verify_signature(index, signature, public_key)  # before the index is parsed
    entries = parse_index(index)
    digests = {}
    for e in entries:
        if member is None:
            raise BundleError(f"bundle ends before {e.name} (truncated upload?)")
        _plain(member, e.name)
        digests[e.name] = _copy(tar, member, dest_fd, e.size)
        if digests[e.name] != e.sha256:
            raise BundleError(f"{e.name} sha256 {digests[e.name][:12]}… does not match the "
                              f"{'signed ' if public_key else ''}index {e.sha256[:12]}…")
        member = tar.next()
    if member is not None:
        raise BundleError(f"bundle has members after the indexed ones: {member.name!r}")
    _write(dest_fd, INDEX, index)
    if signature is not None:
        _write(dest_fd, SIGNATURE, signature)
    manifest_fd = os.open(MANIFEST, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dest_fd)
    with os.fdopen(manifest_fd, "rb") as mf:
        raw = mf.read()
    try:
        manifest = parse_manifest(raw, MANIFEST)
    except ManifestError as e:
        raise BundleError(str(e)) from e
    model = next(e for e in entries if e.name == MODEL)
    if manifest.model_file != MODEL:
        raise BundleError(f"model_file {manifest.model_file!r} is not {MODEL!r}")
    if manifest.model_bytes != model.size:
        raise BundleError(f"model {MODEL} has {model.size} bytes, manifest says "
                          f"{manifest.model_bytes} (truncated or wrong file)")
    if manifest.model_sha256 != model.sha256:
        raise BundleError(f"model {MODEL} sha256 {model.sha256[:12]}… does not match manifest"
                          f" {manifest.model_sha256[:12]}…")
    return manifest


def extract_bundle(bundle: Path, dest: Path, public_key: str | None = None) -> Manifest:
    """Unpack into a new directory dest (for tools and tests; the store uses unpack)."""
    dest.mkdir(parents=True)
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return unpack(bundle, fd, public_key)
    finally:
        os.close(fd)
