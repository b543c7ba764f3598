"""The on-device model store: verified versions and an atomically swapped `current` link.

Layout of the store directory (default /var/lib/moodcam/models, where the daemon's
`resolve_model_dir` looks for `current`):

    versions/<id>/            manifest.json, model.tflite, golden.npz, bundle.json[, bundle.sig]
    current -> versions/<id>  the model the daemon loads
    .lock                     serialises `moodcam model` commands

Ownership: the store and everything in it belong to root (group: the state directory's,
i.e. the daemon's, mode 0750), so the daemon reads models and can change none. Its parent
belongs to the daemon's user, so a command opens the store once with O_NOFOLLOW, checks
its owner and mode (device/safefs.py) and works through that descriptor from then on:
renaming or replacing `models` in the parent cannot redirect anything root does.

Power cuts: a version is unpacked under versions/.tmp-*, its files and directory are
fsynced, and only then is it renamed to its final name; `current` changes by renaming a
new symlink over the old one. At any instant the store therefore holds the old or the
new model whole. What an interrupted command leaves behind (.tmp-* entries) is invisible
to the daemon and removed by the next command, under the lock.

A version directory's mtime records when it was last made current (0 = never), which
orders `list` and picks the `rollback` target without another file to keep consistent.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from device.bundle import (
    GOLDEN,
    MANIFEST,
    SIGNATURE,
    BundleError,
    check_golden,
    load_golden,
    verify_installed,
)
from device.bundleread import unpack
from device.manifest import Manifest, ManifestError
from device.safefs import fd_path, open_dir

CURRENT = "current"
VERSIONS = "versions"
TMP = ".tmp-"
DEFAULT_KEEP = 3


class StoreError(RuntimeError):
    """A store operation that cannot go ahead; str() is one line saying why."""


@dataclass(frozen=True)
class Version:
    id: str
    path: Path
    manifest: Manifest | None  # None when the directory is not a usable model
    problem: str | None
    activated: float  # when it last became current; 0.0 = never
    signed: bool

    @property
    def ok(self) -> bool:
        return self.manifest is not None

    def describe(self) -> str:
        if self.manifest is None:
            return f"{self.id} (unusable: {self.problem})"
        m = self.manifest
        return f"{self.id} ({m.name} {m.version}, sha256 {m.model_sha256[:12]})"


@dataclass(frozen=True)
class Staged:
    """A bundle unpacked and checked inside the store, not yet a version."""

    path: Path
    manifest: Manifest

    @property
    def id(self) -> str:
        return version_id(self.manifest, (self.path / MANIFEST).read_bytes())

    @property
    def name(self) -> str:
        return self.path.name


def version_id(manifest: Manifest, manifest_bytes: bytes) -> str:
    """`<version>-<manifest digest>`: the manifest pins the model by sha256, so one id is
    one exact deployment (the same model with another threshold or labels is another)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", manifest.version).strip("-.")[:48] or "model"
    return f"{name}-{hashlib.sha256(manifest_bytes).hexdigest()[:12]}"


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None  # the store opened under the lock

    @property
    def base(self) -> Path:
        """The store itself while locked (its descriptor), else its path (reading only)."""
        return self.root if self._fd is None else fd_path(self._fd)

    @property
    def versions_dir(self) -> Path:
        return self.base / VERSIONS

    @property
    def current_link(self) -> Path:
        return self.base / CURRENT

    # -- locking and recovery ---------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store exclusively; clear what an interrupted command left behind."""
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            root = os.geteuid() == 0
            fd = open_dir(self.root, create=True, mode=0o750 if root else 0o755,
                          group=os.stat(self.root.parent).st_gid if root else None)
        except OSError as e:
            raise StoreError(f"cannot use the model store {self.root}: "
                             f"{e.strerror or e} (run as root?)") from None
        try:
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(VERSIONS, 0o755, dir_fd=fd)
                lock = os.open(".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600,
                               dir_fd=fd)
            except OSError as e:
                raise StoreError(f"cannot write the model store {self.root}: "
                                 f"{e.strerror or e} (run as root?)") from None
            try:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(f"another `moodcam model` command is using {self.root}; "
                                     "try again when it has finished") from None
                self._fd = fd
                self.recover()
                yield
            finally:
                os.close(lock)
        finally:
            self._fd = None
            os.close(fd)

    def recover(self) -> list[str]:
        """Remove partial versions and temporary links (call only under the lock)."""
        removed = []
        for parent in (self.base, self.versions_dir):
            if not parent.is_dir():
                continue
            for entry in parent.iterdir():
                if entry.name.startswith((TMP, CURRENT + TMP)):
                    _rmtree(entry)
                    removed.append(str(entry.relative_to(self.base)))
        return removed

    # -- reading ----------------------------------------------------------------------
    def _load(self, path: Path) -> Version:
        manifest, problem = None, None
        try:
            # Every file against the bundle index, as the daemon checks it (without a key).
            manifest = verify_installed(path, None)
        except BundleError as e:
            problem = str(e).replace(f"{path}/", "").replace(f"{path}: ", "")
        return Version(path.name, path, manifest, problem, path.stat().st_mtime,
                       (path / SIGNATURE).is_file())

    def versions(self) -> list[Version]:
        """Every version, the most recently current first, never-current ones last."""
        if not self.versions_dir.is_dir():
            return []
        found = [self._load(p) for p in self.versions_dir.iterdir()
                 if p.is_dir() and not p.is_symlink() and not p.name.startswith(TMP)]
        return sorted(found, key=lambda v: (-v.activated, v.id))

    def current_id(self) -> str | None:
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        name = Path(target).name
        return name if (self.versions_dir / name).is_dir() else None

    def current(self) -> Version | None:
        vid = self.current_id()
        return self._load(self.versions_dir / vid) if vid else None

    def get(self, vid: str) -> Version:
        path = self.versions_dir / vid
        if "/" in vid or vid.startswith(".") or not path.is_dir():
            known = ", ".join(v.id for v in self.versions()) or "none"
            raise StoreError(f"no version {vid!r} in {self.root} (versions: {known})")
        return self._load(path)

    def previous(self) -> Version | None:
        """The usable version that was current most recently before the current one."""
        cur = self.current_id()
        for v in self.versions():
            if v.id != cur and v.ok and v.activated > 0:
                return v
        return None

    # -- writing (under the lock) -------------------------------------------------------
    def stage(self, bundle: Path, public_key: str | None) -> Staged:
        """Unpack and verify a bundle (signature, sizes, sha256, manifest) inside the store:
        a directory of root's that only this command writes, removed if anything fails."""
        assert self._fd is not None, "stage() needs the lock"
        name = f"{TMP}{secrets.token_hex(4)}"
        vfd = os.open(VERSIONS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self._fd)
        try:
            os.mkdir(name, 0o700, dir_fd=vfd)
            tfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=vfd)
        finally:
            os.close(vfd)
        tmp = self.versions_dir / name
        try:
            manifest = unpack(bundle, tfd, public_key)
        except BundleError:
            _rmtree(tmp)
            raise
        finally:
            os.close(tfd)
        return Staged(tmp, manifest)

    def discard(self, staged: Staged) -> None:
        _rmtree(staged.path)

    def commit(self, staged: Staged) -> Version:
        """Make a staged bundle a version, durably; reuse an identical existing one."""
        final = self.versions_dir / staged.id
        if final.is_dir():
            existing = self._load(final)
            if existing.ok:
                self.discard(staged)
                return existing
            if self.current_id() == staged.id:
                raise StoreError(f"version {staged.id} is current but damaged "
                                 f"({existing.problem}); roll back first")
            _rmtree(final)
        dfd = os.open(staged.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for f in os.listdir(dfd):
                ffd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    os.fchmod(ffd, 0o644)  # the store's 0750 keeps out all but the daemon
                    os.fsync(ffd)
                finally:
                    os.close(ffd)
            os.fchmod(dfd, 0o755)
            os.utime(dfd, (0, 0))  # never current yet
            os.fsync(dfd)
        finally:
            os.close(dfd)
        os.rename(staged.path, final)
        _fsync_path(self.versions_dir, directory=True)
        return self._load(final)

    def activate(self, vid: str) -> None:
        """Point `current` at versions/<vid> by renaming a fresh symlink over it."""
        if not (self.versions_dir / vid).is_dir():
            raise StoreError(f"no version {vid!r} in {self.root}")
        if self.current_link.exists() and not self.current_link.is_symlink():
            raise StoreError(f"{self.current_link} is not a symlink, so it cannot be swapped "
                             "atomically; move it away (or point model.dir elsewhere)")
        tmp = self.base / f"{CURRENT}{TMP}{secrets.token_hex(4)}"
        # Relative, so the store still works when seen from a chroot or another prefix.
        os.symlink(f"{VERSIONS}/{vid}", tmp)
        os.replace(tmp, self.current_link)
        _fsync_path(self.base, directory=True)
        now = time.time()
        os.utime(self.versions_dir / vid, (now, now))
        _fsync_path(self.versions_dir / vid, directory=True)

    def deactivate(self) -> None:
        """Remove `current` (the daemon then uses the model shipped with moodcam)."""
        self.current_link.unlink(missing_ok=True)
        _fsync_path(self.base, directory=True)

    def remove(self, vid: str) -> None:
        if vid == self.current_id():
            raise StoreError(f"version {vid} is current; it cannot be removed")
        path = self.versions_dir / vid
        # Renamed first so a half-deleted version never looks like a version.
        doomed = self.versions_dir / f"{TMP}rm-{secrets.token_hex(4)}"
        os.rename(path, doomed)
        _rmtree(doomed)

    def prune(self, keep: int) -> list[str]:
        """Keep `keep` versions in all: the current one and the most recently current others."""
        cur = self.current_id()
        ordered = self.versions()
        recent = [v.id for v in ordered if v.id != cur and v.ok and v.activated > 0]
        keep_ids = {cur, *recent[:max(keep - (1 if cur else 0), 0)]}
        removed = []
        for v in ordered:
            if v.id not in keep_ids:
                self.remove(v.id)
                removed.append(v.id)
        return removed


def check_model(staged: Staged, prefer: str | None, running_labels: list[str] | None,
                allow_label_change: bool = False) -> str:
    """Load the model in the runtime, match it to its manifest and run the golden samples.

    Returns what was run, for the log. Raises BundleError saying what is wrong, in one line.
    """
    from device.classify import Classifier
    from device.runtime import ModelLoadError, RuntimeUnavailable

    m = staged.manifest
    if running_labels is not None and set(m.labels) != set(running_labels) \
            and not allow_label_change:
        raise BundleError(f"bundle labels {','.join(m.labels)} differ from the running "
                          f"model's {','.join(running_labels)} (a model for another label "
                          "set); pass --allow-label-change if that is intended")
    try:
        clf = Classifier(m, staged.path / m.model_file, prefer=prefer)  # type: ignore[arg-type]
    except (ManifestError, ModelLoadError, RuntimeUnavailable) as e:
        raise BundleError(str(e).replace(str(staged.path) + "/", "")) from e
    golden = load_golden(staged.path / GOLDEN)
    if list(golden.inputs.shape[1:]) != m.input.shape[1:] or golden.inputs.dtype != m.input.dtype:
        raise BundleError(f"golden inputs are {golden.inputs.dtype} {list(golden.inputs.shape)},"
                          f" the model takes {m.input.dtype} {m.input.shape}")
    try:
        check_golden(clf.interpreter.invoke, golden)
    except (ValueError, RuntimeError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"golden samples do not fit the model: {e}") from e
    return f"{clf.runtime}, {len(golden.inputs)} golden samples"


__all__ = ["DEFAULT_KEEP", "ModelStore", "Staged", "StoreError", "Version", "check_model",
           "version_id"]
