"""The daemon's fault paths, driven from the host while it runs (deploy/pi-emulated.sh).

    pi_faults.py ROOT CONFIG_TEMPLATE RUN_DIR -- CMD...

CMD runs the daemon with --config /tmp/moodcam-traced.toml as seen from ROOT (a chroot
prefix; "/" runs it on the host). Its stderr goes to RUN_DIR/strace.log, where qemu's
QEMU_STRACE puts the daemon's system calls beside its log lines. While it runs, each path
that a short run never takes is made to happen, and the daemon's own log must say so:
the camera (an image folder) goes and comes back, SIGHUP reloads config and model, the
spool's file system fills and frees, the broker crashes and returns. Then SIGTERM, and
the daemon must exit 0. The x86 twin is tests/test_unit_seccomp.py's fault test; this one
exists because aarch64 has other system calls than x86 (deploy/pi-emulated.sh, step 8).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.broker import Broker, make_broker  # noqa: E402
from tests.test_spool_faults import fill  # noqa: E402

FRAMES, SPOOL, CONFIG = "tmp/moodcam-frames", "tmp/moodcam-spool", "tmp/moodcam-traced.toml"
LINE = re.compile(rb"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) [a-z_.]+: [^\n]*")
MIN_FRAMES = 600
WAIT_S = 240.0  # qemu runs the daemon ~10-30x slower than the host


def set_key(text: str, section: str, key: str, value: str) -> str:
    """TOML text with `key = value` in [section] (replaced, or added at the section's head)."""
    head = re.search(rf"(?m)^\[{re.escape(section)}\]\s*$", text)
    if head is None:
        return f"{text.rstrip()}\n\n[{section}]\n{key} = {value}\n"
    nxt = re.compile(r"(?m)^\[").search(text, head.end())
    end = nxt.start() if nxt else len(text)
    body = text[head.end():end]
    line = re.compile(rf"(?m)^{re.escape(key)}\s*=.*$")
    body = (line.sub(f"{key} = {value}", body, count=1) if line.search(body)
            else f"\n{key} = {value}{body}")
    return text[:head.end()] + body + text[end:]


def traced_config(template: str, port: int) -> str:
    edits = [("camera", "source", f'"/{FRAMES}"'), ("camera", "max_fps", "2.0"),
             ("camera", "retry_initial_s", "0.2"), ("camera", "retry_max_s", "1.0"),
             ("aggregate", "window_s", "2"), ("spool", "path", f'"/{SPOOL}/spool.sqlite"'),
             ("mqtt", "enabled", "true"), ("mqtt", "host", '"127.0.0.1"'),
             ("mqtt", "port", str(port)), ("mqtt", "status_interval_s", "1"),
             ("mqtt", "reconnect_min_s", "0.2"), ("mqtt", "reconnect_max_s", "0.5")]
    for section, key, value in edits:
        template = set_key(template, section, key, value)
    return template


def _owner(root: Path) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == "moodcam":
            return int(f[2]), int(f[3])
    raise SystemExit(f"pi_faults: no user moodcam in {root}/etc/passwd")


class Log:
    def __init__(self, path: Path) -> None:
        self.path, self.mark = path, 0

    def lines(self) -> list[str]:
        data = self.path.read_bytes() if self.path.exists() else b""
        return [m.group().decode(errors="replace") for m in LINE.finditer(data)]

    def wait(self, what: str, proc: subprocess.Popen[bytes], test: Callable[[str], bool]
             ) -> None:
        """Until a log line after the last mark passes test; then the mark moves past it."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines()[self.mark:], self.mark):
                if test(line):
                    print(f"   {what}: {line}", flush=True)
                    self.mark = i + 1
                    return
            if proc.poll() is not None:
                raise SystemExit(f"pi_faults: the daemon exited ({proc.returncode}) before"
                                 f" {what}:\n" + "\n".join(self.lines()[-15:]))
            time.sleep(0.5)
        raise SystemExit(f"pi_faults: no sign of {what} in {WAIT_S:.0f} s:\n"
                         + "\n".join(self.lines()[-15:]))


def drive(root: Path, template: Path, run: Path, cmd: list[str]) -> int:
    broker: Broker = make_broker(run, ["allow_anonymous true", "persistence false"])
    broker.start()
    spool, frames = root / SPOOL, root / FRAMES
    away = frames.with_name(frames.name + "-away")  # same file system: rename, not copy
    spool.mkdir(parents=True, exist_ok=True)
    uid, gid = _owner(root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=256k,uid={uid},gid={gid},mode=0700",
                    "tmpfs", str(spool)], check=True)
    files = sorted(frames.iterdir())  # replayed at 2 fps: enough for every fault under qemu
    for k in range(1, -(-MIN_FRAMES // len(files))):
        for f in files:
            shutil.copy(f, frames / f"{k:03d}-{f.name}")
    (root / CONFIG).write_text(traced_config(template.read_text(), broker.port))
    (root / CONFIG).chmod(0o644)
    log = Log(run / "strace.log")
    with (run / "strace.log").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        log.wait("connected", proc, lambda s: "MQTT: connected to" in s)
        log.wait("frames", proc, lambda s: bool(re.search(r"window \S+: \d+ viewers, [1-9]", s)))
        frames.rename(away)
        log.wait("camera lost", proc, lambda s: "is gone" in s)
        away.rename(frames)
        log.wait("camera back", proc, lambda s: "frames flowing again" in s)
        proc.send_signal(signal.SIGHUP)
        log.wait("SIGHUP", proc, lambda s: "reloaded: model" in s)
        fill(spool / "filler")
        log.wait("spool full", proc, lambda s: "database or disk is full" in s)
        (spool / "filler").unlink()
        log.wait("spool freed", proc, lambda s: "works again" in s)
        broker.kill()
        log.wait("broker lost", proc, lambda s: "connection lost" in s)
        broker.start()
        log.wait("reconnected", proc, lambda s: "MQTT: connected to" in s)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.kill()
        if away.exists() and not frames.exists():
            away.rename(frames)
        subprocess.run(["umount", "-l", str(spool)], check=False)
    if rc != 0 or b"Traceback" in (run / "strace.log").read_bytes():
        print(f"pi_faults: the daemon exited {rc}:\n" + "\n".join(log.lines()[-15:]),
              file=sys.stderr)
        return 1
    shutil.rmtree(away, ignore_errors=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    return drive(Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
