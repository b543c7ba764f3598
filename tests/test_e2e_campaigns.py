"""End to end, as a new user would run it: two campaigns alternate on a now-playing topic
(moodcam-nowplaying), a video of FER-2013 test faces plays to the REAL daemon (`moodcam
run`, YuNet + the shipped model), moodcam-collect stores the windows in a real PostgreSQL,
moodcam-report compares the campaigns, and the HTML report renders in headless Chromium.

While campaign A shows, most faces are happy; while B shows, most are sad. The report must
put A's happy share above B's with Wilson 95% intervals that do not overlap.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.broker import Broker, Subscriber, wait_until
from tests.browser import browser, open_report

__all__ = ["browser"]

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "demo-1"
TOPIC = f"signage/{DEVICE}/now_playing"
A, B = "campaign-a", "campaign-b"

FPS = 5
LEAD_S = 4.0  # empty scene before the first faces: the daemon and the bridge settle
FACES_S = 4.0  # faces on screen per segment
GAP_S = 3.0  # empty scene after them: longer than the tracker's max_age_s (1.5 s)
SEGMENTS = 12  # alternating A, B, A, ...
SIDE = 120  # face size in pixels (the FER 48 px faces, enlarged)
# Per segment: 6 faces of the campaign's main mood and 2 of the other.
MIX = {A: ("happy", "sad"), B: ("sad", "happy")}


def fer_faces(fer_zip: Path, emotion: str, n: int) -> list[np.ndarray]:
    """The first n test faces of an emotion by file name: the same on every machine."""
    with zipfile.ZipFile(fer_zip) as z:
        names = sorted(x for x in z.namelist()
                       if x.startswith(f"test/{emotion}/") and x.endswith((".jpg", ".png")))
        if len(names) < n:
            pytest.fail(f"{fer_zip} has {len(names)} test '{emotion}' faces, need {n}")
        faces = [cv2.imdecode(np.frombuffer(z.read(x), np.uint8), cv2.IMREAD_GRAYSCALE)
                 for x in names[:n]]
    if any(f is None for f in faces):
        pytest.fail(f"{fer_zip}: a test '{emotion}' face does not decode")
    return [f for f in faces if f is not None]


def announce(path: Path, content_id: str) -> None:
    """Replace the now-playing file atomically: `cat` must never read it half-written (an
    empty read means "nothing playing")."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(content_id + "\n")
    os.replace(tmp, path)


def campaign_of(segment: int) -> str:
    return A if segment % 2 == 0 else B


def write_video(fer_zip: Path, out: Path) -> float:
    """The demo video (MJPG, 640x480, FPS); returns its length in seconds."""
    n_each = SEGMENTS * 4  # 6 + 2 per segment, half the segments each way
    pools = {e: iter(fer_faces(fer_zip, e, n_each)) for e in ("happy", "sad")}
    rng = np.random.default_rng(7)
    slots = [(40 + col * 150, 60 + row * 200) for row in range(2) for col in range(4)]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (640, 480))
    assert vw.isOpened(), "OpenCV cannot write MJPG video"
    empty = np.full((480, 640), 110, np.uint8)

    def frames(img: np.ndarray, seconds: float) -> None:
        for _ in range(round(seconds * FPS)):
            vw.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))

    frames(empty, LEAD_S)
    for seg in range(SEGMENTS):
        main, other = MIX[campaign_of(seg)]
        faces = [next(pools[main]) for _ in range(6)] + [next(pools[other]) for _ in range(2)]
        order = rng.permutation(len(faces))
        scene = empty.copy()
        for (x, y), i in zip(slots, order, strict=True):
            scene[y:y + SIDE, x:x + SIDE] = cv2.resize(faces[i], (SIDE, SIDE),
                                                        interpolation=cv2.INTER_CUBIC)
        frames(scene, FACES_S)
        frames(empty, GAP_S)
    vw.release()
    return LEAD_S + SEGMENTS * (FACES_S + GAP_S)


def daemon_config(tmp: Path, video: Path, broker: Broker, model_dir: Path,
                  yunet: Path) -> Path:
    cfg = tmp / "moodcam.toml"
    cfg.write_text(f"""device_id = "{DEVICE}"
[camera]
source = "{video}"
max_fps = {FPS}
[model]
dir = "{model_dir}"
[detector]
kind = "yunet"
yunet_model = "{yunet}"
[aggregate]
window_s = 10
[spool]
path = "{tmp / 'spool.sqlite'}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
status_interval_s = 1
[campaign]
topic = "{TOPIC}"
[clock]
trust = "always"
""")
    return cfg


class Proc:
    """A subprocess whose stderr is collected by a thread (so it never blocks)."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.lines: list[tuple[float, str]] = []
        self.p = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, text=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def when(self, text: str) -> float | None:
        return next((t for t, ln in self.lines if text in ln), None)

    def log(self) -> str:
        return "\n".join(ln for _, ln in self.lines[-60:])

    def stop(self, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait(5)


def db_windows(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute("SELECT count(*) FROM windows").fetchone()
        return int(row[0]) if row else 0


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.shared
def test_two_campaigns_end_to_end(mosquitto: Broker, pg_url: str, fer_zip: Path,
                                  yunet_path: Path, model_dir: Path, browser: Any,
                                  tmp_path: Path) -> None:
    video = tmp_path / "demo.avi"
    length = write_video(fer_zip, video)
    cfg = daemon_config(tmp_path, video, mosquitto, model_dir, yunet_path)
    now_file = tmp_path / "now_playing"
    announce(now_file, A)
    watch = Subscriber(mosquitto, [TOPIC, f"moodcam/{DEVICE}/mood"])
    procs: list[Proc] = []
    try:
        collector = Proc("collect", "analyst.collect.cli", "--mqtt",
                         f"{mosquitto.host}:{mosquitto.port}", "--db", pg_url)
        bridge = Proc("nowplaying", "analyst.nowplaying_cli", "--mqtt",
                      f"{mosquitto.host}:{mosquitto.port}", "--topic", TOPIC,
                      "--exec", f"cat {now_file}", "--interval", "0.2")
        procs += [collector, bridge]
        assert watch.wait_for(lambda: bool(watch.on(TOPIC)), 15), bridge.log()
        daemon = Proc("daemon", "device.cli", "run", "--config", str(cfg))
        procs.append(daemon)
        # The video starts playing when the daemon opens the camera.
        assert wait_until(lambda: daemon.when("camera file:") is not None, 90), daemon.log()
        t0 = daemon.when("camera file:")
        assert t0 is not None
        # Switch campaigns mid-gap: after a segment's faces left, before the next appear.
        for seg in range(1, SEGMENTS):
            at = t0 + LEAD_S + seg * (FACES_S + GAP_S) - GAP_S / 2
            time.sleep(max(0.0, at - time.monotonic()))
            announce(now_file, campaign_of(seg))
        # The video ends, the daemon stops by itself and flushes its last windows.
        assert daemon.p.wait(timeout=length + 60) == 0, daemon.log()
        published = len(watch.on(f"moodcam/{DEVICE}/mood"))
        assert published >= SEGMENTS
        assert wait_until(lambda: db_windows(pg_url) == published, 30), collector.log()
        assert collector.stop() == 0, collector.log()
        assert bridge.stop() == 0, bridge.log()
    finally:
        for p in procs:
            p.stop(5)
        watch.close()
    switches = [json.loads(m)["content_id"] for m in watch.on(TOPIC)]
    assert switches[:SEGMENTS] == [campaign_of(s) for s in range(SEGMENTS)]

    report = subprocess.run([sys.executable, "-m", "analyst.report_cli", "--db", pg_url,
                             "--format", "csv"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert report.returncode == 0, report.stderr
    rows = {r["content_id"]: r for r in csv.DictReader(io.StringIO(report.stdout))}
    assert set(rows) >= {A, B}, report.stdout
    a, b = rows[A], rows[B]
    print(f"\nA: {a['viewers']} viewers, happy {a['happy_share']} "
          f"[{a['happy_low']}, {a['happy_high']}]; B: {b['viewers']} viewers, happy "
          f"{b['happy_share']} [{b['happy_low']}, {b['happy_high']}]")
    assert float(a["happy_low"]) > float(b["happy_high"]), report.stdout
    # Each face is one viewer: at most 8 per segment, 6 segments per campaign.
    for r in (a, b):
        assert 24 <= int(r["viewers"]) <= 48, report.stdout

    text = subprocess.run([sys.executable, "-m", "analyst.report_cli", "--db", pg_url],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and f"{A} has a higher happy share than {B}" in text.stdout, (
        text.stdout)
    print(text.stdout)
    page = tmp_path / "report.html"
    html = subprocess.run([sys.executable, "-m", "analyst.report_cli", "--db", pg_url,
                           "--format", "html", "--out", str(page)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert html.returncode == 0, html.stderr
    shot = tmp_path / "report.png"
    info = open_report(browser, page, shot)
    assert len(info["images"]) == 3
    assert all(i["complete"] and i["width"] > 0 for i in info["images"]), info
    assert [e for e in info["console"] if e["level"] in ("SEVERE", "WARNING")] == []
    if target := os.environ.get("MOODCAM_E2E_SCREENSHOT"):
        Path(target).write_bytes(shot.read_bytes())
