"""Run a command under a unit file's SystemCallFilter, as systemd would, without systemd.

    python tests/seccomp.py systemd/moodcam.service -- COMMAND...
    python tests/seccomp.py systemd/moodcam.service --check-trace QEMU_STRACE_LOG

The second form checks the calls a qemu-user guest made (its QEMU_STRACE log) against
the same filter: deploy/pi-emulated.sh traces the daemon on emulated aarch64 that way,
since qemu-user cannot load a filter for its guest.

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
import re
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
AUDIT_ARCH_AARCH64 = 0xC00000B7  # libseccomp's SCMP_ARCH_AARCH64
# qemu's strace lines: "PID name(args) = ret", or "PID Unknown syscall NR" for calls its
# table has no name for. Threads interleave: a call may start right after another's ")".
# (Not after a space: the daemon's own log says "recovered 1 window(s)".)
TRACED = re.compile(r"(?:^|(?<=\)))\d+ (?:([a-z_][a-z0-9_]*)\(|Unknown syscall (\d+))",
                    re.MULTILINE)
# Denied on purpose, and handled: ProtectClock=yes denies @clock, and device/clock.py's
# kernel_synchronized reads adjtimex's EPERM as "unknown" (tests/test_unit_seccomp.py).
HANDLED = {"adjtimex", "clock_adjtime", "clock_adjtime64"}


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
    if re.search(r"(?m)^ProtectClock=(yes|true|1)\s*$", unit.read_text()):
        allowed -= expand(["@clock"], groups)  # systemd denies these for ProtectClock too
    return allowed, err


def libseccomp() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)


def load(allowed: set[str], err: int) -> int:
    """Install the filter on this process (inherited across exec); returns the rule count."""
    lib = libseccomp()
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


def traced_calls(log: str, arch: int = AUDIT_ARCH_AARCH64) -> dict[str, int]:
    """The calls in a QEMU_STRACE log, by name, with how often each was made; a number
    qemu could not name is named by libseccomp for `arch` (else kept as "#NR")."""
    lib = libseccomp()
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_char_p
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    calls: dict[str, int] = {}
    for name, number in TRACED.findall(log):
        if not name:
            resolved = lib.seccomp_syscall_resolve_num_arch(arch, int(number))
            name = resolved.decode() if resolved else f"#{number}"
        calls[name] = calls.get(name, 0) + 1
    return calls


def check_trace(unit: Path, log: Path) -> int:
    """0 when every traced call is one the unit allows; else 1, naming the others."""
    allowed, _ = unit_filter(unit)
    calls = traced_calls(log.read_text(errors="replace"))
    if not calls:
        print(f"seccomp: no traced calls in {log} (was QEMU_STRACE set?)", file=sys.stderr)
        return 1
    denied = sorted(c for c in calls if c not in allowed)
    print(f"   {len(calls)} distinct calls ({sum(calls.values())} in all) traced; "
          f"{len(calls) - len(denied)} allowed by {unit.name}")
    for c in denied:
        print(f"   {'denied, handled' if c in HANDLED else 'DENIED'}: {c} ({calls[c]}x)")
    return 1 if set(denied) - HANDLED else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--check-trace":
        return check_trace(Path(argv[0]), Path(argv[2]))
    if len(argv) < 3 or argv[1] != "--":
        print("usage: seccomp.py UNIT -- COMMAND... | UNIT --check-trace LOG", file=sys.stderr)
        return 2
    allowed, err = unit_filter(Path(argv[0]))
    load(allowed, err)
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
