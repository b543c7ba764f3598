"""`moodcam run`: the long-running service.

Start-up order matters for systemd: READY=1 is sent only once the model is verified
and the spool is open, so `systemctl start` fails visibly when either cannot work. A
camera is hardware that comes and goes: absent at start or lost later, it is retried in
the background while windows keep closing (with `frames: 0`) and the status says
`degraded`. Signals only set flags; the main loop acts on them between frames, so a
window is never half-processed when it is closed, spooled and published.

Faults the daemon lives with are listed in `self.faults` ({component: one line}) and in
the retained status; each disappears when it clears.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from device import __version__
from device.assemble import (
    Publisher,
    StartupError,
    load_classifier,
    load_detector,
    make_camera,
    make_publisher,
    make_schedule,
    make_tracker,
    start_grabber,
)
from device.capture import LatestFrameGrabber
from device.clock import Clock, SystemClock, boot_id
from device.config import Config, ConfigError, load_config
from device.health import camera_fault, fault_line, status_line, status_payload
from device.notify import Notifier, watchdog_interval
from device.nowplaying import NowPlaying
from device.pipeline import Pipeline, StageTimes
from device.spool import Spool
from device.windowstore import WindowStore

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0  # publishing the last window; systemd's TimeoutStopSec is longer


class Daemon:
    def __init__(self, cfg: Config, config_path: Path | None = None,
                 print_windows: bool = False, duration: float | None = None,
                 clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.print_windows = print_windows
        self.duration = duration
        self.notifier = Notifier()
        self.clock = clock or SystemClock(cfg.clock.trust, cfg.clock.sync_file)
        self.boot = boot_id()
        self.started = self.clock.monotonic()
        self.synced, self.clock_source = self.clock.synchronized()
        # Faults the daemon lives with now, one line per component (status "faults");
        # anyone sets and clears entries. The spool's entry comes from self.store.
        self.faults: dict[str, str] = {}
        self.store: WindowStore | None = None
        self._held_check = 0.0
        self._stop = threading.Event()
        self._reload = threading.Event()
        c = cfg.campaign
        self.now_playing = NowPlaying(c.default_content_id, c.min_segment_s, c.topic)
        self._published_faults: dict[str, str] = {}
        self.times = StageTimes()
        self.frames = 0
        self.fps = 0.0
        self.last_frame = 0.0
        self.last_window_id: str | None = None
        self.spool: Spool | None = None
        self.publisher: Publisher | None = None
        self.grabber: LatestFrameGrabber | None = None
        self.pipeline: Pipeline | None = None

    # -- start-up ----------------------------------------------------------------
    def _build_pipeline(self, cfg: Config, content_id: str | None) -> Pipeline:
        classifier = load_classifier(cfg)
        detector = load_detector(cfg)
        log.info("model %s %s (%s, %s), detector %s", classifier.manifest.name,
                 classifier.manifest.version, classifier.manifest.model_sha256[:12],
                 classifier.runtime, detector.describe())
        assert self.spool is not None and self.store is not None
        pipe = Pipeline.build(detector, classifier, cfg.device_id,
                              float(cfg.aggregate.window_s), tracker=make_tracker(cfg),
                              content_id=content_id, times=self.times,
                              stream=lambda: self.spool.stream if self.spool else "",
                              seq=self.store.allocate,
                              release=self.store.release, offset=self._offset(),
                              synced=self.synced,
                              step_tolerance_s=cfg.clock.step_tolerance_s,
                              schedule=make_schedule(cfg))
        pipe.sink = lambda payload: self._sink(pipe, payload)
        return pipe

    def _offset(self) -> float:
        """Wall minus monotonic time now."""
        return self.clock.wall() - self.clock.monotonic()

    def _open_spool(self) -> None:
        cfg = self.cfg
        try:
            self.spool = Spool(cfg.spool.path, cfg.spool.max_windows)
            self.store = WindowStore(self.spool, self.boot, cfg.clock.hold_unsynced_s,
                                     self.clock.monotonic, self._wake_publisher)
        except Exception as e:  # sqlite3 and OS errors: unwritable dir, locked file
            raise StartupError(f"spool: cannot open {cfg.spool.path}: {e}") from None
        self.store.recover()  # a full disk is a fault, not a reason to exit
        # Windows held by an earlier boot can never be restamped: publish them flagged.
        self.store.release_held(self.synced, self._offset())

    def _stamp(self) -> float:
        """The pipeline's timeline (monotonic), for content switches and closing."""
        return self.clock.monotonic()

    def set_fault(self, component: str, problem: str | None) -> None:
        """List (or, with None, clear) what is wrong with a component, one line."""
        if problem is None:
            self.faults.pop(component, None)
        else:
            self.faults[component] = fault_line(problem)

    def start(self) -> None:
        cfg = self.cfg
        self._open_spool()
        assert self.spool is not None
        self.pipeline = self._build_pipeline(cfg, self.now_playing.current)
        self.grabber = start_grabber(cfg, make_camera(cfg), strict=False)
        if self.grabber.state == "ok":
            log.info("camera %s", self.grabber.source.describe())
        else:
            log.warning("camera %s is not available (%s): running without frames, "
                        "reopening every %g-%g s; status says degraded until it delivers",
                        self.grabber.source.describe(), self.grabber.last_error,
                        cfg.camera.retry_initial_s, cfg.camera.retry_max_s)
        try:
            self.publisher = make_publisher(cfg, self.spool, self.now_playing, self._stamp)
        except ConfigError as e:  # unreadable password or TLS files
            raise StartupError("; ".join(e.problems), 2) from None
        if self.publisher is not None:
            self.publisher.start()

    # -- windows -------------------------------------------------------------------
    def _wake_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.wake()

    def _sink(self, pipe: Pipeline, payload: dict[str, Any]) -> None:
        assert self.store is not None
        span = pipe.aggregator.spans.pop(payload["seq"], None)
        hold = self.store.hold_for(payload, span, self.synced, self._offset())
        if not self.store.store(payload, hold):
            return
        self.last_window_id = payload["window_id"]
        log.info("window %s: %d viewers, %d detections, %d frames%s",
                 payload["window_id"], payload["viewers_total"], payload["detections_total"],
                 payload["frames"], " (held: clock unsynchronised)" if hold else "")
        if self.print_windows:
            sys.stdout.write(json.dumps(payload) + "\n")
            sys.stdout.flush()

    def _tick_clock(self, now: float) -> None:
        """Once a second: clock sync state and steps, held windows, spool retries."""
        assert self.pipeline is not None and self.store is not None
        synced, self.clock_source = self.clock.synchronized()
        became_synced = synced and not self.synced
        self.synced = synced
        self.pipeline.set_clock(now, self._offset(), synced)
        if became_synced:
            log.info("wall clock synchronised (%s)", self.clock_source)
        if became_synced or self._held_check + min(5.0, self.cfg.clock.hold_unsynced_s) <= now:
            self._held_check = now
            self.store.release_held(synced, self._offset())
        self.store.retry()
        if self.store.fault:
            self.faults["spool"] = self.store.fault
        else:
            self.faults.pop("spool", None)

    def _checkpoint(self, now: float) -> None:
        assert self.pipeline is not None and self.store is not None
        if self.store.waiting:
            return  # the spool cannot write now; the last checkpoint stays
        self.store.checkpoint(self.pipeline.snapshot(now))

    # -- status --------------------------------------------------------------------
    def status(self, state: str | None = None) -> dict[str, Any]:
        """The retained status payload (device/schemas/status.schema.json)."""
        return status_payload(self, state)

    def _update_faults(self) -> None:
        assert self.grabber is not None
        self.set_fault("camera", camera_fault(self.grabber))
        self.set_fault("now_playing", self.now_playing.fault())

    def _status_line(self) -> str:
        if self.store is not None and self.store.fault:
            self.faults["spool"] = self.store.fault
        return status_line(self)

    # -- the loop ------------------------------------------------------------------
    def run(self) -> int:
        self.start()
        assert self.grabber is not None and self.pipeline is not None
        self.notifier.ready(f"running: {self.grabber.source.describe()} ({self.grabber.state})")
        log.info("moodcam %s running as %s", __version__, self.cfg.device_id)
        wd = watchdog_interval()
        status_every = self.cfg.mqtt.status_interval_s
        last_ping = last_status = last_fps_t = time.monotonic()
        last_tick = last_checkpoint = self._held_check = self.clock.monotonic()
        checkpoint_s = self.cfg.spool.checkpoint_s
        fps_frames = 0
        cam_state = self.grabber.state
        deadline = time.monotonic() + self.duration if self.duration else None
        self._publish_status()
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self._apply_content()
            t_get = time.monotonic()
            frame = self.grabber.get(timeout=0.5)
            mono = self.clock.monotonic()
            if mono - last_tick >= 1.0:
                last_tick = mono
                self._tick_clock(mono)
            if frame is not None:
                # Live frames carry monotonic timestamps; others are stamped on arrival.
                ts = frame.ts if self.grabber.source.live else mono
                self.pipeline.process(frame.image, ts)
                self.frames += 1
                fps_frames += 1
                self.last_frame = time.monotonic()
            else:
                self.pipeline.tick(mono)
                if self.grabber.ended:
                    log.info("source ended: stopping")
                    break
                if time.monotonic() - t_get < 0.05:
                    # A grabber that answers at once without a frame must not spin the loop.
                    self._stop.wait(0.1)
            if mono - last_checkpoint >= checkpoint_s:
                last_checkpoint = mono
                self._checkpoint(mono)
            now = time.monotonic()
            if wd and now - last_ping >= wd:
                # The loop turned, frames or not: systemd restarts a hung loop, while a
                # lost camera is the grabber's to retry and the status's to report.
                self.notifier.watchdog()
                last_ping = now
            self._update_faults()
            if (now - last_status >= status_every or self.grabber.state != cam_state
                    or self.faults != self._published_faults):
                cam_state = self.grabber.state
                # fps is averaged over the time since the previous status.
                self.fps = round(fps_frames / max(now - last_fps_t, 1e-3), 2)
                fps_frames, last_fps_t = 0, now
                self._publish_status()
                last_status = now
            if deadline is not None and now >= deadline:
                break
        return self.shutdown()

    def _apply_content(self) -> None:
        assert self.pipeline is not None
        switch = self.now_playing.poll(self._stamp())
        if switch is not None:
            log.info("content now %s", switch.content)
            self.pipeline.set_content(switch.content, switch.stamp)

    def _publish_status(self, state: str | None = None) -> None:
        self._published_faults = dict(self.faults)
        self.notifier.status(self._status_line())
        if self.publisher is not None:
            try:
                self.publisher.publish_status(self.status(state))
            except Exception as e:  # status is best effort; windows are what matters
                log.warning("status not published: %s", e)

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping: closing the current window")
        if self.publisher is not None and self.grabber is not None:
            self._publish_status("stopping")
        if self.grabber is not None:
            self.grabber.stop()
        if self.pipeline is not None and self.store is not None:
            self._apply_content()
            self.pipeline.close(self.clock.monotonic())
            self.store.retry(force=True)
            if not self.store.waiting:
                self.store.checkpoint([])  # every window is spooled: nothing to recover
            else:
                log.error("%d window(s) could not be spooled (%s); the last checkpoint "
                          "keeps what it can for the next start", self.store.waiting,
                          self.store.fault)
        if self.publisher is not None:
            self.publisher.stop(STOP_TIMEOUT_S)
        if self.spool is not None:
            left = self.store.counts()["depth"] if self.store else 0
            if left:
                log.info("%d window(s) stay spooled for the next start", left)
            self.spool.close()
        self.notifier.close()
        return 0

    # -- signals -------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def reload(self) -> None:
        """SIGHUP (device/reload.py): apply the new config and model, or keep the old."""
        from device.reload import reload

        reload(self)


def run_daemon(config_path: str | None, duration: float | None = None,
               print_windows: bool | None = None) -> int:
    from device.assemble import builtin_config

    if config_path:
        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            raise StartupError(f"config {config_path}: " + "; ".join(e.problems), 2) from None
    else:
        cfg = builtin_config()
        log.info("no --config: device %s, spool %s, broker %s:%d; windows also go to stdout",
                 cfg.device_id, cfg.spool.path, cfg.mqtt.host, cfg.mqtt.port)
    logging.getLogger().setLevel(cfg.log.level)
    d = Daemon(cfg, Path(config_path) if config_path else None,
               print_windows=(config_path is None) if print_windows is None else print_windows,
               duration=duration)
    d.install_signals()
    try:
        return d.run()
    except StartupError:
        d.notifier.stopping()
        if d.grabber is not None:
            d.grabber.stop()
        if d.spool is not None:
            d.spool.close()
        raise


__all__ = ["STOP_TIMEOUT_S", "Daemon", "run_daemon"]
