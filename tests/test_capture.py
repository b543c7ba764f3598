"""Frame sources and the latest-frame grabber.

Files, folders and the sample source are real; the Pi camera is a fake picamera2 module
because no camera exists here; the grabber's failure handling is driven by a scripted
source, since a USB camera cannot be unplugged from a test.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from device.capture import (
    CaptureError,
    FolderSource,
    Frame,
    FrameSource,
    LatestFrameGrabber,
    OpenCVSource,
    PiCameraSource,
    SampleSource,
    make_source,
)
from device.capture.opencv import redact
from device.capture.sample import ACTORS, PERIOD_S


def write_video(path: Path, n: int = 12, fps: float = 8.0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    assert vw.isOpened()
    for i in range(n):
        vw.write(np.full((48, 64, 3), i * 20, np.uint8))
    vw.release()
    return path


# -- OpenCV -------------------------------------------------------------------------
def test_video_file_is_finite_on_its_own_timeline(tmp_path: Path) -> None:
    src = OpenCVSource(str(write_video(tmp_path / "v.avi")))
    assert src.finite and not src.live
    with src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert len(frames) == 12
    assert frames[0].image.shape == (48, 64, 3)
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].ts == pytest.approx(5 / 8.0)
    assert src.describe() == f"file:{tmp_path / 'v.avi'}"


def test_missing_or_bad_video_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not found"):
        OpenCVSource(str(tmp_path / "none.mp4")).open()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(CaptureError, match="cannot open"):
        OpenCVSource(str(bad)).open()


def test_absent_camera_index_is_a_capture_error() -> None:
    with pytest.raises(CaptureError):
        OpenCVSource(97).open()


def test_urls_are_redacted() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.5/stream") == "rtsp://***@10.0.0.5/stream"
    src = OpenCVSource("rtsp://admin:s3cret@10.0.0.5/stream")
    assert "s3cret" not in src.describe() and src.live and not src.finite


# -- folders ------------------------------------------------------------------------
def test_folder_reads_images_in_order_and_skips_unreadable(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((20, 30, 3), i, np.uint8))
    (tmp_path / "img1b.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    with FolderSource(str(tmp_path), fps=2.0) as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2]
    assert [f.ts for f in frames] == [0.0, 0.5, 1.0]
    with FolderSource(str(tmp_path / "img[02].png")) as src:
        assert src.read() is not None and src.read() is not None and src.read() is None


def test_empty_folder_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no images"):
        FolderSource(str(tmp_path)).open()


# -- sample -------------------------------------------------------------------------
def test_sample_source_shows_the_scenario(yunet_path: Path) -> None:
    from device.detect import YuNetDetector

    det = YuNetDetector(yunet_path)
    with SampleSource(realtime=False, frames=int(PERIOD_S * 10)) as src:
        counts = []
        while (f := src.read()) is not None:
            if f.index % 10 == 0:
                assert f.image.shape == (480, 640, 3)
                counts.append(len(det.detect(f.image)))
    assert len(counts) == PERIOD_S
    expect = [sum(a.t0 <= t < a.t1 for a in ACTORS) for t in range(int(PERIOD_S))]
    assert counts == expect
    assert max(counts) == 2 and min(counts) == 0


def test_sample_source_realtime_paces_frames() -> None:
    with SampleSource(fps=50.0, realtime=True, frames=6) as src:
        t0 = time.monotonic()
        while src.read() is not None:
            pass
    assert time.monotonic() - t0 >= 5 / 50.0 * 0.9


def test_sample_source_without_scikit_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(CaptureError, match="scikit-image"):
        SampleSource().open()


# -- Pi camera (fake picamera2) -------------------------------------------------------
class FakePicamera2:
    instances: ClassVar[list[FakePicamera2]] = []
    fail_after: int | None = None
    channels = 3

    def __init__(self, num: int = 0) -> None:
        self.num = num
        self.calls: list[str] = []
        self.config: dict[str, Any] = {}
        self.n = 0
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": "imx708", "Num": 0}]

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        return kw

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        if self.fail_after is not None and self.n >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.n += 1
        w, h = self.config["main"]["size"]
        return np.full((h, w, self.channels), self.n, np.uint8)

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    FakePicamera2.instances = []
    FakePicamera2.fail_after = None
    FakePicamera2.channels = 3
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    return FakePicamera2


def test_pi_camera_configures_bgr_video_and_reads(fake_picamera2: type[FakePicamera2]) -> None:
    src = PiCameraSource(320, 240, fps=15)
    with src:
        f = src.read()
        assert f is not None and f.image.shape == (240, 320, 3) and f.index == 0
        assert abs(f.ts - time.monotonic()) < 5  # live frames: the monotonic clock
        cam = fake_picamera2.instances[0]
        assert cam.config["main"] == {"size": (320, 240), "format": "RGB888"}
        assert cam.config["controls"] == {"FrameRate": 15.0}
    assert cam.calls == ["start", "stop", "close"]
    assert src.live and not src.finite


def test_pi_camera_drops_the_padding_channel(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.channels = 4
    with PiCameraSource(64, 48) as src:
        f = src.read()
    assert f is not None and f.image.shape == (48, 64, 3)


def test_pi_camera_failure_is_a_capture_error(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.fail_after = 1
    with PiCameraSource(64, 48) as src:
        assert src.read() is not None
        with pytest.raises(CaptureError, match="timed out"):
            src.read()


def test_pi_camera_without_picamera2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CaptureError, match="picamera2 is not installed"):
        PiCameraSource().open()


def test_auto_prefers_the_pi_camera(fake_picamera2: type[FakePicamera2]) -> None:
    assert isinstance(make_source("auto"), PiCameraSource)


# -- make_source ----------------------------------------------------------------------
def test_make_source_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_video(tmp_path / "v.avi")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(make_source("sample"), SampleSource)
    assert make_source("sample", realtime=False, sample_frames=5).finite
    assert isinstance(make_source("0"), OpenCVSource)
    assert isinstance(make_source("http://cam.local/mjpg"), OpenCVSource)
    assert make_source(str(video)).finite
    assert isinstance(make_source(str(tmp_path)), FolderSource)
    assert isinstance(make_source(str(tmp_path / "*.png")), FolderSource)
    assert isinstance(make_source(str(tmp_path / "a.png")), FolderSource)
    with pytest.raises(CaptureError, match="no such file"):
        make_source(str(tmp_path / "missing.mp4"))
    monkeypatch.setitem(sys.modules, "picamera2", None)
    monkeypatch.setattr("device.capture.Path.exists", lambda self: False)
    assert isinstance(make_source("auto"), SampleSource)


# -- grabber ----------------------------------------------------------------------------
class Scripted(FrameSource):
    """A live source whose reads and opens follow a script, to drive the grabber."""

    live = True

    def __init__(self, fail_reads_after: int | None = None, failing_opens: int = 0,
                 period: float = 0.002, frames: int | None = None) -> None:
        self.fail_reads_after = fail_reads_after
        self.failing_opens = failing_opens
        self.period = period
        self.frames = frames
        self.finite = frames is not None
        self.n = 0
        self.opens = 0
        self.closes = 0
        self.is_open = False
        self.img = np.zeros((4, 4, 3), np.uint8)

    def describe(self) -> str:
        return "scripted"

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and self.failing_opens > 0:
            self.failing_opens -= 1
            raise CaptureError("no such device")
        self.is_open = True

    def read(self) -> Frame | None:
        time.sleep(self.period)
        if self.frames is not None and self.n >= self.frames:
            return None
        if self.fail_reads_after is not None and self.n >= self.fail_reads_after:
            self.fail_reads_after = None  # unplugged once
            raise CaptureError("select() timeout")
        self.n += 1
        return Frame(self.img, time.time(), self.n - 1)

    def close(self) -> None:
        self.closes += 1
        self.is_open = False


def test_grabber_hands_out_the_newest_frame_and_drops_stale_ones() -> None:
    g = LatestFrameGrabber(Scripted(period=0.001))
    g.start()
    try:
        seen = []
        for _ in range(5):
            time.sleep(0.03)  # a slow pipeline
            f = g.get(timeout=1.0)
            assert f is not None
            seen.append(f.index)
    finally:
        g.stop()
    assert seen == sorted(seen) and len(set(seen)) == 5
    assert all(b - a > 1 for a, b in itertools.pairwise(seen))  # skipped stale ones
    assert g.frames_dropped > 0
    assert g.state == "stopped"


def test_grabber_never_hands_out_a_frame_twice() -> None:
    src = Scripted(frames=1, period=0.0)
    g = LatestFrameGrabber(src)
    g.start()
    first = g.get(timeout=1.0)
    assert first is not None and first.index == 0
    assert g.get(timeout=0.3) is None
    assert g.ended
    g.stop()


def test_grabber_caps_the_frame_rate() -> None:
    g = LatestFrameGrabber(Scripted(period=0.001), max_fps=20.0)
    g.start()
    try:
        t0 = time.monotonic()
        got = [g.get(timeout=1.0) for _ in range(6)]
    finally:
        g.stop()
    assert all(got)
    assert time.monotonic() - t0 >= 5 / 20.0 * 0.9


def test_grabber_recovers_a_lost_camera_with_backoff() -> None:
    src = Scripted(fail_reads_after=3, failing_opens=2)
    g = LatestFrameGrabber(src, retry_initial_s=0.05, retry_max_s=0.1)
    states = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            states.append(g.state)
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    g.start()
    w.start()
    try:
        t0 = time.monotonic()
        while src.n < 10 and time.monotonic() - t0 < 5:
            g.get(timeout=0.5)
    finally:
        stop.set()
        w.join()
        g.stop()
    assert src.n >= 10
    assert src.opens == 4  # start + two failed reopens + the one that worked
    assert g.reopens == 3
    assert "retrying" in states and "lost" in states
    assert states[-1] == "ok"
    assert g.last_error == "no such device"
    # Backoff: 0.05 s, then 0.1, 0.1 (capped) before the successful reopen.
    assert time.monotonic() - t0 >= 0.2


def test_grabber_paces_non_live_sources(tmp_path: Path) -> None:
    src = OpenCVSource(str(write_video(tmp_path / "v.avi", n=6, fps=20.0)))
    g = LatestFrameGrabber(src)
    g.start()
    got = []
    t0 = time.monotonic()
    while (f := g.get(timeout=2.0)) is not None:
        got.append(f.index)
    assert g.ended
    assert time.monotonic() - t0 >= 5 / 20.0 * 0.8  # played at 20 fps, not decoded at once
    assert got == list(range(6))  # a consumer that keeps up loses nothing
    g.stop()


def test_grabber_start_fails_when_the_camera_is_absent() -> None:
    g = LatestFrameGrabber(OpenCVSource(97))
    with pytest.raises(CaptureError):
        g.start()

