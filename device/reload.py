"""SIGHUP: apply a new config and model without losing a window, or keep everything.

Everything that can fail is built before anything changes: the config is parsed and
validated (device/config, size-capped and one line per problem), the new model and
detector are loaded, a new camera must open. Only then is the old window closed and the
new pipeline swapped in. A reload that fails for any reason leaves the running config,
model, camera and open window untouched, logs one line, and lists `faults.config`
until a reload succeeds.

device_id, [mqtt], [spool] and [clock] take a restart (the connection, its last will,
the spool file and the clock's sync source are set up once); the log says so and keeps
the old values.
[campaign] applies at once: a new topic is subscribed in place of the old one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from device.assemble import StartupError, make_camera, start_grabber
from device.config import CampaignConfig, Config, ConfigError, load_config

if TYPE_CHECKING:
    from device.daemon import Daemon

log = logging.getLogger(__name__)

RESTART_ONLY = ("device_id", "mqtt", "spool", "clock")


def reload(d: Daemon) -> None:
    d.notifier.reloading()
    try:
        _reload_now(d)
    except ConfigError as e:
        more = f" (and {len(e.problems) - 1} more problems)" if len(e.problems) > 1 else ""
        _failed(d, e.problems[0] + more)
    except StartupError as e:
        _failed(d, str(e))
    except Exception as e:  # a reload must never end the daemon
        log.debug("reload failure", exc_info=True)
        _failed(d, f"{type(e).__name__}: {e}")
    else:
        d.set_fault("config", None)
    finally:
        d.notifier.ready(d._status_line())
        # Right away, not at the next interval: `moodcam model install` waits on it.
        d._publish_status()


def _failed(d: Daemon, why: str) -> None:
    why = " ".join(why.split())[:250]
    log.error("reload failed, keeping the running config and model: %s", why)
    d.set_fault("config", f"reload failed: {why}")


def _reload_now(d: Daemon) -> None:
    old, p = d.cfg, d.pipeline
    assert p is not None and d.grabber is not None
    cfg = load_config(d.config_path) if d.config_path else old
    for key in RESTART_ONLY:
        if getattr(cfg, key) != getattr(old, key):
            log.warning("reload: %s changed; that takes a restart "
                        "(systemctl restart moodcam), keeping the old value", key)
            cfg = cfg.model_copy(update={key: getattr(old, key)})
    new = d._build_pipeline(cfg, d.now_playing.current)  # raises before any change
    if cfg.camera != old.camera:
        _swap_camera(d, old, cfg)
    # The model (and so the labels) may change: the window so far belongs to the old one.
    p.close(d._stamp())
    d.pipeline, d.cfg = new, cfg
    if cfg.campaign != old.campaign:
        _apply_campaign(d, old.campaign, cfg.campaign)
    logging.getLogger().setLevel(cfg.log.level)
    log.info("reloaded: model %s %s", new.classifier.manifest.name,
             new.classifier.manifest.version)


def _swap_camera(d: Daemon, old: Config, cfg: Config) -> None:
    """The new camera must open, or the reload fails with the old camera running again
    (retried in the background if it cannot reopen at once: never a stopped grabber)."""
    assert d.grabber is not None
    source = make_camera(cfg)  # a spec that names nothing: fails before any change
    previous = d.grabber.source
    # The old camera is released first: the new source may be the same device.
    d.grabber.stop()
    try:
        d.grabber = start_grabber(cfg, source)
    except StartupError:
        d.grabber = start_grabber(old, previous, strict=False)
        raise
    log.info("camera %s", d.grabber.source.describe())


def _apply_campaign(d: Daemon, old: CampaignConfig, new: CampaignConfig) -> None:
    d.now_playing.reconfigure(new.default_content_id, new.min_segment_s, new.topic)
    if new.topic != old.topic and d.publisher is not None:
        d.publisher.set_campaign(new)
    log.info("reload: campaign topic %s, default content %s, min segment %g s",
             new.topic or "(none)", new.default_content_id, new.min_segment_s)


__all__ = ["RESTART_ONLY", "reload"]
