"""Run a command under a unit file's SystemCallFilter, as systemd would, without systemd.

    python tests/seccomp.py systemd/moodcam.service -- COMMAND...

The filter is rebuilt from the unit's own lines with systemd's semantics: the first
allow list implies `@default`, each `~` line removes its calls again, and everything
else fails with the unit's `SystemCallErrorNumber` (EPERM). Groups are expanded by this
machine's `systemd-analyze syscall-filter` (systemd 252 here, as on Raspberry Pi OS
bookworm), and the filter is loaded with libseccomp through ctypes, so no binding
package is needed. Then the command is exec'ed: its interpreter, its libraries'
start-up and every thread it starts run under the filter, as in the service.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def syscall_groups() -> dict[str, list[str]]:
    """Every `@group` systemd knows, with its members (calls and nested groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                         capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif not line.startswith(" "):
            current = None  # the trailing "unlisted" section is not a group
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        if name.startswith("@"):
            if name not in groups:
                raise ValueError(f"systemd knows no syscall group {name}")
            calls |= expand(groups[name], groups)
        else:
            calls.add(name)
    return calls


def unit_filter(unit: Path) -> tuple[set[str], int]:
    """The calls a unit allows, and the errno everything else gets."""
    groups = syscall_groups()
    allowed: set[str] | None = None
    err = errno.EPERM
    for raw in unit.read_text().splitlines():
        key, _, value = raw.strip().partition("=")
        if key == "SystemCallErrorNumber":
            err = getattr(errno, value.strip())
        if key != "SystemCallFilter" or not value.strip():
            continue
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        if allowed is None:
            if deny:
                raise ValueError("a deny-list-only filter is not what moodcam's units use")
            allowed = names | expand(["@default"], groups)
        elif deny:
            allowed -= names
        else:
            allowed |= names
    if allowed is None:
        raise ValueError(f"{unit} sets no SystemCallFilter")
    return allowed, err


def load(allowed: set[str], err: int) -> int:
    """Install the filter on this process (inherited across exec); returns the rule count."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(scmp_act_errno(err))
    if not ctx:
        raise OSError("seccomp_init failed")
    rules = 0
    for name in sorted(allowed):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # another architecture's call (systemd skips these too)
        rc = lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add {name}")
        rules += 1
    rc = lib.seccomp_load(ctx)  # sets no_new_privs first, as NoNewPrivileges=yes does
    if rc < 0:
        raise OSError(-rc, "seccomp_load")
    return rules


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: seccomp.py UNIT -- COMMAND...", file=sys.stderr)
        return 2
    allowed, err = unit_filter(Path(argv[0]))
    load(allowed, err)
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
