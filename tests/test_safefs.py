"""Taking over a model store that an older moodcam left owned by the daemon's user."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modelbundles import bundle, current_sha, sha_of
from tests.test_modelstore import error_line, model, write_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def arena() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("taking a store over needs root (CI runs as root)")
    d = Path(tempfile.mkdtemp(prefix="moodcam-safefs-"))
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_a_daemon_owned_store_is_refused_then_taken_over(arena: Path) -> None:
    state = arena / "state"
    state.mkdir()
    cfg = str(write_config(arena, state / "models"))
    assert model("install", str(bundle(arena, "v0")), "--config", cfg)[0] == 0
    store = state / "models"
    secret = arena / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    # What an older install.sh left (chown -R moodcam) and a compromised daemon added.
    version = next((store / "versions").iterdir())
    os.symlink(secret, version / "link")
    for dirpath, dirnames, filenames in os.walk(store):
        for n in [*dirnames, *filenames]:
            os.chown(Path(dirpath) / n, 65534, 65534, follow_symlinks=False)
    os.chown(store, 65534, 65534)
    os.link(secret, version / "stolen")  # a hard link to root's file keeps root's owner
    rc, _, err = model("install", str(bundle(arena, "v1", 1)), "--config", cfg)
    assert rc == 1 and "is owned by uid 65534, not root" in error_line(err)

    p = subprocess.run([sys.executable, "-m", "device.safefs", "secure-tree", str(store)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    st = secret.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_nlink) == (0, 0o600, 1)
    assert not (version / "stolen").exists()
    assert (version / "link").is_symlink() and os.lstat(version / "link").st_uid == 0
    for dirpath, dirnames, filenames in os.walk(store):
        for n in [*dirnames, *filenames]:
            assert os.lstat(Path(dirpath) / n).st_uid == 0
    assert stat.S_IMODE(store.stat().st_mode) == 0o750
    rc, _, err = model("install", str(bundle(arena, "v1", 1)), "--config", cfg)
    assert rc == 0, err
    assert current_sha(store) == sha_of(1)


def test_a_directory_swapped_in_after_mkdir_is_not_taken_for_roots(
        arena: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race tests/test_store_race.py once hit: root makes the store's directory, and
    the parent's owner renames a directory of their own (with a link to root's secret in
    it) over the new, still empty one before root opens it. Root must refuse it, not
    chown it to itself and then work inside the attacker's files."""
    from device import safefs

    state = arena / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    theirs = state / "theirs"
    (theirs / "versions").mkdir(parents=True)
    os.symlink(arena / "secret", theirs / "current")
    for p in (theirs, theirs / "versions", theirs / "current"):
        os.chown(p, 65534, 65534, follow_symlinks=False)
    real_mkdir = os.mkdir

    def mkdir_then_swap(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(name, mode, dir_fd=dir_fd)
        os.rename(theirs, state / "models")  # replaces the new empty directory

    monkeypatch.setattr(safefs.os, "mkdir", mkdir_then_swap)
    with pytest.raises(safefs.UnsafeDirectory, match="owned by uid 65534, not root"):
        safefs.open_dir(state / "models", create=True, mode=0o750, group=0)
    st = (state / "models").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o755)
    assert (state / "models" / "versions").stat().st_uid == 65534
