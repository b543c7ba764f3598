"""Building the stages from a config: shared by `run`, `replay`, `classify` and `bench`.

Every expected failure (bad model, missing detector file, a camera source that names
nothing) becomes a StartupError carrying one line that says what is wrong and what to do.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from device.bundle import BundleError, read_public_key, verify_installed
from device.capture import CaptureError, FrameSource, LatestFrameGrabber, make_source
from device.classify import Classifier
from device.config import CampaignConfig, Config, ConfigError, parse_config, resolve_model_dir
from device.config.load import clip, repo_models_dir
from device.detect import DetectorError, FaceDetector, make_detector, set_threads
from device.manifest import ManifestError
from device.nowplaying import NowPlaying
from device.runtime import ModelLoadError, RuntimeUnavailable
from device.schedule import Schedule, detections_needed
from device.spool import Spool
from device.track import Tracker

log = logging.getLogger(__name__)

SYSTEM_STATE = Path("/var/lib/moodcam")


class StartupError(RuntimeError):
    """An expected, explainable failure; str() is the one line shown to the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def hostname_device_id() -> str:
    """The host name made into a valid device id (one MQTT topic level)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).strip("-.")[:64]
    return name or "moodcam"


def state_dir() -> Path:
    """Where a run without a config keeps its spool: /var/lib/moodcam when writable (the
    service), else $XDG_STATE_HOME/moodcam, ~/.local/state/moodcam or ./.moodcam."""
    if SYSTEM_STATE.is_dir() and os.access(SYSTEM_STATE, os.W_OK):
        return SYSTEM_STATE
    candidates = []
    if os.environ.get("XDG_STATE_HOME"):
        candidates.append(Path(os.environ["XDG_STATE_HOME"]) / "moodcam")
    home = Path.home()
    if str(home) not in ("", "/"):
        candidates.append(home / ".local" / "state" / "moodcam")
    for c in candidates:
        try:
            c.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(c, os.W_OK):
            return c
    return Path.cwd() / ".moodcam"


def builtin_config(device_id: str | None = None) -> Config:
    """Defaults for a run without --config: this host's name, the spool in a state dir
    the user can write, and this machine's clock trusted (a desktop or laptop, not a Pi
    without a real-time clock: the installed service's config trusts only NTP)."""
    try:
        return parse_config({"device_id": device_id or hostname_device_id(),
                             "spool": {"path": str(state_dir() / "spool.sqlite")},
                             "clock": {"trust": "always"}})
    except ConfigError as e:
        raise StartupError(e.problems[0], 2) from None


def load_classifier(cfg: Config, model_dir: Path | None = None) -> Classifier:
    """The configured model, its signature checked first when a public key is configured
    (at start and at every reload): only the model shipped inside the package is exempt."""
    d = model_dir or resolve_model_dir(cfg.model)
    prefer = None if cfg.model.runtime == "auto" else cfg.model.runtime
    try:
        # One resolution of `current`, so the version verified is the version loaded.
        d = d.resolve()
        if cfg.model.public_key_file is not None and d != repo_models_dir().resolve():
            verify_installed(d, read_public_key(cfg.model.public_key_file))
        return Classifier.from_dir(d, prefer=prefer, num_threads=cfg.model.threads,
                                   min_confidence=cfg.model.min_confidence)
    except BundleError as e:
        raise StartupError(f"model refused: {e}") from None
    except (ManifestError, ModelLoadError, RuntimeUnavailable) as e:
        raise StartupError(f"model: {e}") from None
    except OSError as e:
        raise StartupError(f"model: cannot read {clip(str(d))}: {e.strerror or e}") from None


def load_detector(cfg: Config) -> FaceDetector:
    d = cfg.detector
    set_threads(d.threads)
    try:
        return make_detector(d.yunet_model, d.kind, d.score_threshold, d.nms_threshold,
                             d.min_face_px, d.max_faces, d.input_width,
                             d.recheck_score, d.backend, d.threads)
    except DetectorError as e:
        raise StartupError(f"detector: {e}") from None


def make_tracker(cfg: Config) -> Tracker:
    t = cfg.tracker
    return Tracker(iou_threshold=t.iou_threshold,
                   min_hits=detections_needed(t.min_hits, cfg.detector.every_n_frames),
                   max_age_s=t.max_age_s)


def make_schedule(cfg: Config) -> Schedule:
    return Schedule(detect_every=cfg.detector.every_n_frames,
                    scene_change=cfg.detector.scene_change,
                    classify_every=cfg.tracker.classify_every,
                    settle_after=cfg.tracker.settle_after)


def make_camera(cfg: Config, realtime: bool = True, spec: str | None = None,
                sample_frames: int | None = None) -> FrameSource:
    c = cfg.camera
    try:
        return make_source(spec or c.source, c.width, c.height, c.max_fps, realtime=realtime,
                           sample_frames=sample_frames)
    except CaptureError as e:
        raise StartupError(f"camera: {e}") from None


def start_grabber(cfg: Config, source: FrameSource, strict: bool = True) -> LatestFrameGrabber:
    """strict=False never raises: a camera that does not open is retried in the
    background (the daemon's status says so)."""
    c = cfg.camera
    grabber = LatestFrameGrabber(source, max_fps=c.max_fps, retry_initial_s=c.retry_initial_s,
                                 retry_max_s=c.retry_max_s)
    try:
        grabber.start(strict)
    except CaptureError as e:
        raise StartupError(f"camera: {e}") from None
    return grabber


class Publisher(Protocol):
    def start(self) -> None: ...
    def wake(self) -> None: ...
    def publish_status(self, status: dict[str, Any]) -> None: ...
    def set_campaign(self, campaign: CampaignConfig) -> None: ...
    def stop(self, timeout: float) -> None: ...


def make_publisher(cfg: Config, spool: Spool, now_playing: NowPlaying,
                   stamp: Callable[[], float]) -> Publisher | None:
    if not cfg.mqtt.enabled:
        return None
    from device.mqtt import MqttPublisher  # paho is only needed when publishing

    # Both callbacks run on the MQTT thread; NowPlaying only records (thread-safe), the
    # main loop applies the switches.
    pub: Publisher = MqttPublisher(
        cfg.mqtt, cfg.campaign, cfg.device_id, spool,
        lambda cid: now_playing.announce(cid, stamp()), on_bad_content=now_playing.reject)
    return pub
