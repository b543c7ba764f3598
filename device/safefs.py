"""File operations for root inside directories whose parents the daemon's user can write.

/var/lib/moodcam belongs to the daemon's user (its spool lives there), so that user can
rename any entry in it and put a symlink or a directory of its own in its place. Root
(`moodcam model`, deploy/install.sh) therefore never writes through a path below it: it
opens the one directory it works in with O_NOFOLLOW, checks that the directory is its own
and writable by nobody else, and from then on works relative to that descriptor (the
`*at` calls, or /proc/self/fd/N, which names the opened directory whatever is renamed
around it). Entries inside such a directory can only be made by root, so they are safe.

    python -m device.safefs install-file SRC DIR NAME [--mode 0644]
    python -m device.safefs secure-tree DIR [--group GROUP]

are deploy/install.sh's way to place the detector and to take over a model store that an
older moodcam left owned by the daemon's user.
"""

from __future__ import annotations

import argparse
import grp
import os
import secrets
import stat
import sys
from pathlib import Path


class UnsafeDirectory(OSError):
    """A directory root must not write in; str() says which and why."""


def open_dir(path: Path, create: bool = False, mode: int = 0o755,
             group: int | None = None) -> int:
    """An O_NOFOLLOW descriptor of `path`, created if asked; the directory must belong to
    this user (or root) and be writable by nobody else."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if create:
            try:
                os.mkdir(path.name, mode, dir_fd=parent)
            except FileExistsError:
                pass
            else:
                fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                             dir_fd=parent)
                try:
                    # Only the directory mkdir made: whoever owns the parent can rename a
                    # directory of their own over the new empty one before this open, and
                    # root must not chown that to itself (its contents stay theirs).
                    if os.fstat(fd).st_uid == os.geteuid():
                        os.fchmod(fd, mode)  # whatever the umask
                        if group is not None and os.geteuid() == 0:
                            os.fchown(fd, 0, group)
                finally:
                    os.close(fd)
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                         dir_fd=parent)
        except OSError as e:
            if os.path.islink(path):
                raise UnsafeDirectory(e.errno, f"{path} is a symlink, not a directory "
                                      "(someone replaced it; refusing to follow)") from None
            raise
    finally:
        os.close(parent)
    st = os.fstat(fd)
    problem = None
    if st.st_uid not in (0, os.geteuid()):
        problem = f"is owned by uid {st.st_uid}, not root"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        os.close(fd)
        raise UnsafeDirectory(1, f"{path} {problem}: the daemon's user could change files "
                              "under root there (deploy/install.sh re-run fixes an old store)")
    return fd


def fd_path(fd: int) -> Path:
    """A path that reaches the opened directory itself, not whatever bears its name now."""
    return Path(f"/proc/self/fd/{fd}")


def write_file(dir_fd: int, name: str, data_from: Path, mode: int = 0o644) -> None:
    """Copy a file into the directory as `name`, atomically and durably."""
    tmp = f".tmp-{name}.{secrets.token_hex(4)}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                  dir_fd=dir_fd)
    try:
        with data_from.open("rb") as src:
            while chunk := src.read(1 << 20):
                os.write(out, chunk)
        os.fchmod(out, mode)
        os.fsync(out)
    except BaseException:
        os.close(out)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(out)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def secure_tree(path: Path, group: int | None) -> None:
    """Make a directory tree root's (group `group` may read it), without following links.

    For a store an older moodcam made the daemon's user own: the top is opened with
    O_NOFOLLOW and every entry below is reached through its parent's descriptor."""
    if os.geteuid() != 0:
        raise PermissionError("secure-tree needs root")
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        top = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        _secure(top, is_top=True, group=group)
    finally:
        os.close(top)


def _secure(fd: int, is_top: bool, group: int | None) -> None:
    os.fchown(fd, 0, group if is_top and group is not None else 0)
    os.fchmod(fd, 0o750 if is_top else 0o755)
    for name in os.listdir(fd):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)
            continue
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) or (
                stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            # Fifos, devices, hard links (maybe to a file of root's): nothing a store holds.
            os.unlink(name, dir_fd=fd)
            continue
        flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode)
                                              else os.O_NONBLOCK)
        child = os.open(name, flags, dir_fd=fd)
        try:
            now = os.fstat(child)
            if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode) or (
                    stat.S_ISREG(now.st_mode) and now.st_nlink > 1):
                os.unlink(name, dir_fd=fd)  # swapped since the lstat: not the entry we saw
                continue
            if stat.S_ISDIR(st.st_mode):
                _secure(child, is_top=False, group=group)
            else:
                os.fchown(child, 0, 0)
                os.fchmod(child, 0o644)
        finally:
            os.close(child)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m device.safefs")
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("install-file")
    q.add_argument("src", type=Path)
    q.add_argument("dir", type=Path)
    q.add_argument("name")
    q.add_argument("--mode", default="0644")
    q = sub.add_parser("secure-tree")
    q.add_argument("dir", type=Path)
    q.add_argument("--group")
    a = p.parse_args(argv)
    try:
        if a.cmd == "install-file":
            fd = open_dir(a.dir, create=True)
            try:
                write_file(fd, a.name, a.src, int(a.mode, 8))
            finally:
                os.close(fd)
        else:
            secure_tree(a.dir, grp.getgrnam(a.group).gr_gid if a.group else None)
    except (OSError, KeyError) as e:
        print(f"safefs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
