#!/usr/bin/env python3
"""Soak: a real `moodcam run` against a real mosquitto, under every fault it must outlive.

    .venv/bin/python deploy/soak.py              # 10 minutes
    .venv/bin/python deploy/soak.py --minutes 2  # the short form CI runs (tests/test_soak.py)

Every 10 s one event, in a cycle: a burst of 1,000 alternating now-playing ids in about
2 s, the broker restarted (SIGTERM), the wall clock stepped forward 1 h, the daemon killed
with kill -9 and restarted, the broker crashed (kill -9), the wall clock stepped back
1 h, a SIGHUP with a non-UTF-8 config (refused) then with the good one, the daemon killed
again. A persistent-session subscriber records
every `mood` and `status`. At the end it asserts, and prints what it measured:

- every payload validates against its JSON Schema; no status counts a rejected or
  dropped window; every window ends after it starts;
- no `window_id` names two different windows (re-sent copies are identical);
- every window a daemon spooled (printed with --json) reached the subscriber;
- the only missing `seq` numbers are the documented loss: at a kill -9, the window that
  opened after the last checkpoint (spool.checkpoint_s = 1 s here, window_s = 2 s: at
  most one per kill); everything else arrives, `recovered: true` for the window open at
  the kill;
- no daemon exited on its own or printed a traceback.

The wall clock is stepped through MOODCAM_CLOCK_OFFSET_FILE (device/clock.py), the
daemon's test hook: libfaketime breaks Python's time.sleep.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from device.clock import OFFSET_ENV  # noqa: E402
from device.payloads import PayloadError, validate_mood, validate_status  # noqa: E402
from tests.broker import Broker, Subscriber, make_broker  # noqa: E402
from tests.daemonproc import DEV, write_config  # noqa: E402

TOPIC = "signage/soak/now_playing"
WINDOW_S = 2.0
EVENT_EVERY_S = 10.0
EVENTS = ("flood", "broker-restart", "clock-forward", "daemon-kill", "broker-crash",
          "clock-back", "reload", "daemon-kill")


class SoakFailure(AssertionError):
    pass


@dataclass
class Run:
    """One daemon process: its output files, and how it ended."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    killed: bool = False
    died: int | None = None  # exit code, when it ended before we ended it

    def printed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]


@dataclass
class Soak:
    work: Path
    model_dir: Path
    minutes: float
    log: Any = print
    runs: list[Run] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        store = self.work / "store"
        store.mkdir(parents=True, exist_ok=True)
        self.broker: Broker = make_broker(self.work, [
            "allow_anonymous true", "persistence true", f"persistence_location {store}/",
            "autosave_on_changes true", "autosave_interval 1"])
        self.offset = self.work / "clock-offset"
        self.offset.write_text("0")
        self.cfg = write_config(
            self.work / "moodcam.toml", self.model_dir, self.broker.port,
            campaign=f'[campaign]\ntopic = "{TOPIC}"\nmin_segment_s = 2.0\n')
        self.cfg.write_text(self.cfg.read_text().replace("[spool]\n",
                                                         "[spool]\ncheckpoint_s = 1\n"))

    # -- the daemon ------------------------------------------------------------------
    def start_daemon(self) -> None:
        n = len(self.runs)
        out, err = self.work / f"daemon-{n}.out", self.work / f"daemon-{n}.err"
        # Files, not pipes: a pipe nobody reads fills up and blocks the daemon.
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "device.cli", "run", "--json", "--config",
                 str(self.cfg)], stdout=o, stderr=e, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), OFFSET_ENV: str(self.offset)})
        self.runs.append(Run(proc, out, err))

    @property
    def daemon(self) -> Run:
        return self.runs[-1]

    def kill_daemon(self) -> None:
        self.daemon.died = self.daemon.proc.poll()
        self.daemon.proc.kill()
        self.daemon.proc.wait(10)
        self.daemon.killed = True
        self.start_daemon()

    # -- events ----------------------------------------------------------------------
    def flood(self) -> None:
        player = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-player")
        player.max_inflight_messages_set(1000)
        player.connect(self.broker.host, self.broker.port)
        player.loop_start()
        info = None
        for i in range(1000):
            info = player.publish(TOPIC, f"promo-{i % 2}", qos=1)
            time.sleep(0.002)
        assert info is not None
        info.wait_for_publish(10)
        player.disconnect()
        player.loop_stop()

    def event(self, name: str) -> None:
        self.events.append((time.monotonic(), name))
        self.log(f"soak: {name}")
        if name == "flood":
            self.flood()
        elif name == "broker-restart":
            self.broker.stop()
            time.sleep(3)
            self.broker.start()
        elif name == "broker-crash":
            self.broker.kill()
            time.sleep(3)
            self.broker.start()
        elif name == "clock-forward":
            self.offset.write_text("3600")
        elif name == "clock-back":
            self.offset.write_text("0")
        elif name == "daemon-kill":
            self.kill_daemon()
        elif name == "reload":
            # A hostile file first (refused, faults.config), then the good one again.
            good = self.cfg.read_bytes()
            self.cfg.write_bytes(good.replace(b'device_id = "', b'device_id = "\xff'))
            self.daemon.proc.send_signal(signal.SIGHUP)
            time.sleep(2)
            self.cfg.write_bytes(good)
            self.daemon.proc.send_signal(signal.SIGHUP)
        else:
            raise ValueError(name)

    # -- the run ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.broker.start()
        sub = Subscriber(self.broker, [f"moodcam/{DEV}/mood", f"moodcam/{DEV}/status"],
                         persistent=True, client_id="soak-analyst")
        t0 = time.monotonic()
        try:
            self.start_daemon()
            if not sub.wait_for(lambda: len(sub.on(f"moodcam/{DEV}/mood")) >= 1, 60):
                raise SoakFailure("no window within 60 s of the start")
            end = t0 + self.minutes * 60 - 20  # the last 20 s: stop and drain
            i, due = 0, time.monotonic() + EVENT_EVERY_S
            while due < end:
                time.sleep(max(0.0, due - time.monotonic()))
                self.event(EVENTS[i % len(EVENTS)])
                i, due = i + 1, due + EVENT_EVERY_S
            time.sleep(4)
            self.daemon.proc.send_signal(signal.SIGTERM)
            if self.daemon.proc.wait(30) != 0:
                raise SoakFailure(f"the last daemon exited {self.daemon.proc.returncode}")
            spooled = {w["window_id"] for r in self.runs for w in r.printed()}
            sub.wait_for(lambda: spooled <= {json.loads(m)["window_id"]
                                             for m in sub.on(f"moodcam/{DEV}/mood")}, 30)
            elapsed = time.monotonic() - t0
            moods = [json.loads(m) for m in sub.on(f"moodcam/{DEV}/mood")]
            statuses = [json.loads(m) for m in sub.on(f"moodcam/{DEV}/status")]
        finally:
            sub.close()
            for r in self.runs:
                if r.proc.poll() is None:
                    r.proc.kill()
                    r.proc.wait(10)
            self.broker.kill()
        return self.check(moods, statuses, elapsed)

    # -- the verdict -----------------------------------------------------------------
    def check(self, moods: list[dict[str, Any]], statuses: list[dict[str, Any]],
              elapsed: float) -> dict[str, Any]:
        problems: list[str] = []
        for m in moods:
            try:
                validate_mood(m)
            except PayloadError as e:
                problems.append(str(e)[:300])
            start, end = (datetime.fromisoformat(m[k]).timestamp() for k in ("start", "end"))
            if end <= start:
                problems.append(f"{m['window_id']}: end {m['end']} <= start {m['start']}")
        for s in statuses:
            try:
                validate_status(s)
            except PayloadError as e:
                problems.append(str(e)[:300])
        if any(s["spool"]["rejected"] or s["spool"]["dropped"] for s in statuses):
            problems.append("a status counts rejected or dropped windows")
        by_id: dict[str, dict[str, Any]] = {}
        for m in moods:
            if by_id.setdefault(m["window_id"], m) != m:
                problems.append(f"window_id {m['window_id']} names two different windows")
        streams = {m["stream"] for m in moods}
        if len(streams) != 1:
            problems.append(f"{len(streams)} streams from one spool: {sorted(streams)}")
        got = {m["seq"] for m in by_id.values()}
        spooled = {w["window_id"] for r in self.runs for w in r.printed()}
        if lost := spooled - set(by_id):
            problems.append(f"{len(lost)} spooled window(s) never arrived: {sorted(lost)[:5]}")
        # The documented loss: at a kill -9, the window opened after the last checkpoint.
        missing = set(range(1, max(got, default=0) + 1)) - got
        boundaries = []
        for before, after in zip(self.runs, self.runs[1:], strict=False):
            if before.killed:
                lo = max((w["seq"] for w in before.printed()), default=0)
                hi = min((w["seq"] for w in after.printed()), default=lo + 1)
                boundaries.append((lo, hi))
        for seq in sorted(missing):
            at = [b for b in boundaries if b[0] < seq < b[1]]
            if not at:
                problems.append(f"seq {seq} is missing away from any kill -9")
        for lo, hi in boundaries:
            n = len([s for s in missing if lo < s < hi])
            if n > 1:
                problems.append(f"{n} windows lost at one kill -9 (seq {lo + 1}..{hi - 1})")
        refused = sum(r.err.read_text(errors="replace").count("reload failed")
                      for r in self.runs)
        if refused != [n for _, n in self.events].count("reload"):
            problems.append(f"{refused} reloads refused, expected one per reload event")
        for r in self.runs:
            if r.died is not None:
                problems.append(f"{r.err.name}: the daemon exited {r.died} on its own")
            err = r.err.read_text(errors="replace")
            if "Traceback" in err or "RecursionError" in err:
                problems.append(f"{r.err.name}: a traceback")
        kills = sum(r.killed for r in self.runs)
        bound = elapsed / WINDOW_S + 3 * len(self.events) + 5
        if len(by_id) > bound:
            problems.append(f"{len(by_id)} windows in {elapsed:.0f} s (more than {bound:.0f})")
        report = {
            "minutes": round(elapsed / 60, 2), "events": [n for _, n in self.events],
            "daemon_runs": len(self.runs), "kills": kills, "windows": len(by_id),
            "copies_resent": len(moods) - len(by_id), "seq_max": max(got, default=0),
            "lost_at_kills": sorted(missing),
            "recovered": sum(m["recovered"] for m in by_id.values()),
            "statuses": len(statuses), "problems": problems,
        }
        if problems:
            raise SoakFailure(json.dumps(report, indent=1))
        return report


def soak(minutes: float, work: Path, model_dir: Path, log: Any = print) -> dict[str, Any]:
    return Soak(work, model_dir, minutes, log).run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.minutes < 1.5:
        ap.error("--minutes must be at least 1.5 (one cycle of events needs it)")
    with tempfile.TemporaryDirectory(prefix="moodcam-soak-") as tmp:
        work = args.keep or Path(tmp)
        try:
            report = soak(args.minutes, work, args.model_dir,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
        except SoakFailure as e:
            print(f"soak FAILED: {e}", file=sys.stderr)
            return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
