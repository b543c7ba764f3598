"""`moodcam model install|list|rollback`: deploy models to this device, safely.

Install order: unpack into the store and verify (tar, signature, sha256), load in the
runtime and check shapes, labels and golden outputs, commit durably, then swap `current`,
reload the daemon and wait for its MQTT status to report the new sha256 with frames
flowing; if it does not, swap back. Each failure is one line and a non-zero exit, and
before the swap nothing the daemon reads has changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.assemble import StartupError
from device.bundle import BundleError, read_public_key
from device.config import Config, ConfigError, load_config
from device.config.model import STATE_DIR
from device.daemonctl import DaemonError, StatusWatcher, describe_status, find_daemon, runs_model
from device.modelstore import (
    CURRENT,
    DEFAULT_KEEP,
    ModelStore,
    StoreError,
    Version,
    check_model,
)

log = logging.getLogger("moodcam.model")

DEFAULT_CONFIG = Path("/etc/moodcam/moodcam.toml")
CONFIG_ENV = "MOODCAM_CONFIG"


@dataclass
class Target:
    """The device a model command acts on: its config (if any) and its model store."""

    config_path: Path | None
    cfg: Config | None
    store: ModelStore

    def timeout(self, given: float | None) -> float:
        if given is not None:
            return given
        # The daemon publishes status every status_interval_s: allow two, plus a reload.
        return 2 * self.cfg.mqtt.status_interval_s + 30 if self.cfg else 60.0


def _target(args: argparse.Namespace) -> Target:
    given = args.config or os.environ.get(CONFIG_ENV)
    path = Path(given) if given else DEFAULT_CONFIG
    cfg = None
    if path.exists():
        try:
            cfg = load_config(path)
        except ConfigError as e:
            raise StartupError(f"config {path}: " + "; ".join(e.problems), 2) from None
    elif given:
        raise StartupError(f"config {path} not found", 2)
    if args.store:
        store = Path(args.store)
    elif cfg is not None and cfg.model.dir is not None:
        if cfg.model.dir.name != CURRENT:
            raise StartupError(
                f"config {path}: model.dir {cfg.model.dir} is not a model store's "
                f"'{CURRENT}' link, so the daemon would never see installed models; "
                f"unset it (store {STATE_DIR / 'models'}) or set it to <store>/{CURRENT}", 2)
        store = cfg.model.dir.parent
    else:
        store = STATE_DIR / "models"
    return Target(path if cfg is not None else None, cfg, ModelStore(store))


def _public_key(args: argparse.Namespace, cfg: Config | None) -> str | None:
    f = Path(args.public_key) if args.public_key else (cfg.model.public_key_file if cfg
                                                         else None)
    if getattr(args, "allow_unsigned", False):
        if f is not None:
            # A leaked shell or a careless script must not be able to skip the signature:
            # an operator who means it removes the key from the config first.
            where = "--public-key" if args.public_key else "model.public_key_file"
            raise StartupError(f"--allow-unsigned refused: a public key is configured "
                               f"({where} = {f}); unsigned bundles are refused while it is "
                               "(remove the key from the config first if you mean it)", 2)
        return None
    if f is None:
        return None
    try:
        return read_public_key(f)
    except BundleError as e:
        raise StartupError(str(e), 2) from None


def _switch(t: Target, to: Version, back: Version | None, args: argparse.Namespace) -> str:
    """Make `to` current; unless --no-reload, prove the daemon runs it or swap back."""
    daemon = None
    if not args.no_reload and t.config_path is not None:
        daemon = find_daemon(t.config_path, args.pid)
    watcher = None
    assert to.manifest is not None
    try:
        if daemon is not None and t.cfg is not None and t.cfg.mqtt.enabled:
            watcher = StatusWatcher(t.cfg)
            watcher.start()  # before the swap: an unreachable broker changes nothing
        t.store.activate(to.id)
        if args.no_reload:
            return "not reloaded (--no-reload): used at the daemon's next reload or start"
        if daemon is None:
            where = t.config_path or "this device"
            return f"no running daemon uses {where}: used when moodcam starts"
        t0 = time.monotonic()
        timeout = t.timeout(args.timeout)
        try:
            daemon.reload()
        except DaemonError as e:
            problem = str(e)
        else:
            if watcher is None:
                return (f"daemon reloaded ({daemon.describe()}); mqtt is disabled so this "
                        "is unconfirmed: check the daemon's log")
            sha = to.manifest.model_sha256
            if watcher.wait(lambda s: runs_model(s, sha), timeout, daemon.alive):
                return (f"daemon ({daemon.describe()}) runs it with frames flowing "
                        f"(confirmed after {time.monotonic() - t0:.1f} s)")
            problem = ("the daemon exited" if not daemon.alive() else
                       f"not confirmed within {timeout:g} s ({describe_status(watcher.last)})")
        # Swap back; the daemon kept the old model if it refused the new one, but it may
        # also have loaded it and then failed, so it is told to reload either way.
        if back is not None:
            t.store.activate(back.id)
        else:
            t.store.deactivate()
        back_name = back.id if back is not None else "the model shipped with moodcam"
        confirmed = ""
        if daemon.alive():
            try:
                daemon.reload()
                if watcher is not None and back is not None and back.manifest is not None:
                    old = back.manifest.model_sha256
                    ok = watcher.wait(lambda s: runs_model(s, old), timeout, daemon.alive)
                    confirmed = " (confirmed)" if ok else " (not confirmed)"
            except DaemonError as e:
                confirmed = f" (reload failed: {e})"
        raise StartupError(f"{to.id}: {problem}; rolled back to {back_name}{confirmed}")
    except DaemonError as e:
        raise StartupError(str(e)) from None
    finally:
        if watcher is not None:
            watcher.close()


def cmd_install(args: argparse.Namespace) -> int:
    t = _target(args)
    key = _public_key(args, t.cfg)
    prefer = None
    if t.cfg is not None and t.cfg.model.runtime != "auto":
        prefer = t.cfg.model.runtime
    try:
        with t.store.lock():
            staged = t.store.stage(Path(args.bundle), key)
            try:
                cur = t.store.current()
                if cur is not None and cur.manifest == staged.manifest:
                    print(f"{cur.describe()} is already current; nothing to do")
                    return 0
                running = cur.manifest.labels if cur is not None and cur.manifest else None
                checked = check_model(staged, prefer, running, args.allow_label_change)
            except BaseException:
                t.store.discard(staged)
                raise
            log.info("verified %s: signature %s; sha256, shapes, labels and golden "
                     "outputs ok with %s", staged.id, "ok" if key else "not required", checked)
            existed = (t.store.versions_dir / staged.id).is_dir()
            version = t.store.commit(staged)
            back = cur if cur is not None and cur.ok else t.store.previous()
            try:
                outcome = _switch(t, version, back, args)
            except StartupError:
                if not existed and t.store.current_id() != version.id:
                    t.store.remove(version.id)
                raise
            removed = t.store.prune(args.keep)
    except (BundleError, StoreError) as e:
        raise StartupError(str(e)) from None
    if removed:
        log.info("removed old versions: %s", ", ".join(removed))
    print(f"installed {version.describe()}: {outcome}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    t = _target(args)
    try:
        with t.store.lock():
            cur = t.store.current()
            to = t.store.get(args.version) if args.version else t.store.previous()
            if to is None:
                raise StoreError(f"nothing to roll back to in {t.store.root} "
                                 "(no other version has been current)")
            if not to.ok:
                raise StoreError(f"version {to.id} is unusable: {to.problem}")
            if cur is not None and to.id == cur.id:
                print(f"{to.describe()} is already current; nothing to do")
                return 0
            outcome = _switch(t, to, cur if cur is not None and cur.ok else None, args)
    except (BundleError, StoreError) as e:
        raise StartupError(str(e)) from None
    print(f"rolled back to {to.describe()}: {outcome}")
    return 0


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def cmd_list(args: argparse.Namespace) -> int:
    t = _target(args)
    cur = t.store.current_id()
    rows: list[dict[str, Any]] = []
    for v in t.store.versions():
        m = v.manifest
        rows.append({"id": v.id, "current": v.id == cur, "name": m.name if m else None,
                     "version": m.version if m else None,
                     "sha256": m.model_sha256 if m else None,
                     "labels": m.labels if m else None, "signed": v.signed,
                     "activated": _iso(v.activated), "problem": v.problem})
    if args.json:
        print(json.dumps({"store": str(t.store.root), "current": cur, "versions": rows}))
        return 0
    if not rows:
        print(f"no models in {t.store.root}: the daemon uses the model shipped with moodcam")
        return 0
    for r in rows:
        mark = "*" if r["current"] else " "
        if r["problem"]:
            print(f"{mark} {r['id']}  UNUSABLE: {r['problem']}")
            continue
        when = f"current since {r['activated']}" if r["current"] else (
            f"last current {r['activated']}" if r["activated"] else "never current")
        print(f"{mark} {r['id']}  {r['name']} {r['version']}  sha256 {r['sha256'][:12]}  "
              f"{','.join(r['labels'])}  {'signed' if r['signed'] else 'unsigned'}  {when}")
    return 0


def add_model_commands(p: argparse.ArgumentParser) -> None:
    """The `moodcam model` subcommands (cli.py delegates here)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help=f"device config (default: ${CONFIG_ENV}, else "
                        f"{DEFAULT_CONFIG} if it exists)")
    common.add_argument("--store", help="model store directory (default: the parent of "
                        f"model.dir, else {STATE_DIR / 'models'})")
    swap = argparse.ArgumentParser(add_help=False)
    swap.add_argument("--no-reload", action="store_true",
                      help="swap only; do not reload the daemon")
    swap.add_argument("--timeout", type=float, help="seconds to wait for the daemon's status "
                      "to report the model (default: 2 status intervals + 30)")
    swap.add_argument("--pid", type=int, action="append", help="the daemon's pid (default: "
                      "the `moodcam run` using this config, via systemd when it is the unit)")
    sub = p.add_subparsers(dest="model_command", required=True, metavar="MODEL_COMMAND")

    q = sub.add_parser("install", parents=[common, swap], help="verify a bundle, make it "
                       "current, reload the daemon; roll back unless it runs the model")
    q.add_argument("bundle", metavar="BUNDLE", help="bundle file (moodcam-train export)")
    q.add_argument("--public-key", help="Ed25519 public key file (default: "
                   "model.public_key_file); unsigned bundles are then refused")
    q.add_argument("--allow-unsigned", action="store_true",
                   help="accept an unsigned bundle; refused while a public key is configured")
    q.add_argument("--allow-label-change", action="store_true",
                   help="accept a model whose label set differs from the running one")
    q.add_argument("--keep", type=int, default=DEFAULT_KEEP, choices=range(2, 100),
                   metavar="N", help=f"versions to keep (default {DEFAULT_KEEP}, min 2)")
    q.set_defaults(func=cmd_install)

    q = sub.add_parser("list", parents=[common], help="list installed model versions")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("rollback", parents=[common, swap], help="make the previously "
                       "current version (or VERSION) current again")
    q.add_argument("version", nargs="?", metavar="VERSION", help="version id from `list`")
    q.set_defaults(func=cmd_rollback)

