"""deploy/pi_faults.py's config edits: the installed config, turned into the fault run's."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from device.config.load import parse_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy"))
from pi_faults import set_key, traced_config

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "moodcam.example.toml"


def test_set_key_edits_only_its_section() -> None:
    text = '[a]\nport = 1\n\n[b]\nport = 2\n'
    assert set_key(text, "b", "port", "3") == '[a]\nport = 1\n\n[b]\nport = 3\n'
    assert tomllib.loads(set_key(text, "a", "host", '"h"')) == {
        "a": {"host": "h", "port": 1}, "b": {"port": 2}}
    assert tomllib.loads(set_key(text, "c", "x", "true"))["c"] == {"x": True}


def test_the_traced_config_is_the_installed_one_with_the_fault_runs_settings() -> None:
    installed = EXAMPLE.read_text().replace('device_id = "change-me"', 'device_id = "pi"')
    cfg = parse_config(tomllib.loads(traced_config(installed, 28999)))
    assert (cfg.mqtt.enabled, cfg.mqtt.host, cfg.mqtt.port) == (True, "127.0.0.1", 28999)
    assert cfg.camera.source == "/tmp/moodcam-frames" and cfg.aggregate.window_s == 2
    assert str(cfg.spool.path) == "/tmp/moodcam-spool/spool.sqlite"
    assert cfg.camera.retry_max_s == 1.0 and cfg.mqtt.reconnect_max_s == 0.5
    # Everything else stays as installed (the [mqtt.tls] table is not [mqtt]).
    assert cfg.mqtt.tls.enabled is False and cfg.clock.trust == "ntp"
