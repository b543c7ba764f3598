"""The config file: defaults, the example, and one clear line per mistake."""

from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from device.config import (
    Config,
    ConfigError,
    MqttConfig,
    check_config_command,
    default_config,
    load_config,
    parse_config,
    resolve_model_dir,
    resolve_password,
)
from device.config.load import _submodel

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "moodcam.example.toml"


def problems(text: str, tmp_path: Path) -> list[str]:
    f = tmp_path / "moodcam.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(exc.value).splitlines() == exc.value.problems
    return exc.value.problems


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        sub = _submodel(info.annotation)
        if sub is not None:
            keys |= model_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_only_device_id_is_required() -> None:
    cfg = parse_config({"device_id": "shop-12"})
    assert cfg == default_config("shop-12")
    assert cfg.mqtt.port == 1883 and cfg.aggregate.window_s == 60
    assert cfg.camera.source == "auto" and cfg.mqtt.tls.enabled is False


def test_every_field_is_documented_and_defaulted() -> None:
    def walk(model: type[BaseModel], prefix: str = "") -> None:
        for name, info in model.model_fields.items():
            key = prefix + name
            assert info.description, f"{key} has no description"
            if key != "device_id":
                assert not info.is_required(), f"{key} has no default"
            sub = _submodel(info.annotation)
            if sub is not None:
                assert sub.model_config.get("extra") == "forbid", key
                walk(sub, key + ".")

    walk(Config)


def test_example_config_covers_every_key_with_defaults() -> None:
    text = EXAMPLE.read_text()
    cfg = load_config(EXAMPLE)
    assert cfg == default_config("change-me"), "example values must be the defaults"
    # Keys set in the file, plus keys shown commented out (those whose default is unset).
    seen, section = set(), ""
    for line in text.splitlines():
        if m := re.fullmatch(r"\[([\w.]+)\]", line.strip()):
            section = m.group(1) + "."
        elif m := re.match(r"#?\s?(\w+) = ", line):
            seen.add(section + m.group(1))
    missing = model_keys(Config) - seen
    assert not missing, f"deploy/moodcam.example.toml lacks {sorted(missing)}"
    assert not seen - model_keys(Config), "example documents keys the model lacks"
    commented = {k for k in seen if k not in _flatten(tomllib.loads(text))}
    unset = {k for k in commented if _get(cfg, k) is None}
    assert commented == unset, "only keys without a default may be commented out"


def _flatten(d: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_unknown_keys_suggest_the_right_one(tmp_path: Path) -> None:
    out = problems('device_id = "a"\n[camera]\nsorce = "0"\n[camra]\n[mqtt.tls]\nca = "x"\n',
                   tmp_path)
    assert "camera.sorce: unknown key; did you mean 'source'?" in out
    assert "camra: unknown key; did you mean 'camera'?" in out
    assert any(line.startswith("mqtt.tls.ca: unknown key; ") for line in out)
    assert len(out) == 3


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    (line,) = problems('device_id = "a"\n[mqtt]\nport = \n', tmp_path)
    assert "invalid TOML" in line and "line 3" in line


HOSTILE = {
    "non-UTF-8 byte": (b'device_id = "shop-12"\n[camera]\nsource = "caf\xe9"\n',
                       "byte 0xe9 at line 3, column 14 is not UTF-8"),
    "deeply nested arrays": (b'device_id = "a"\nx = ' + b"[" * 5000 + b"]" * 5000 + b"\n",
                             "nested too deeply"),
    "deeply nested inline tables": (b"device_id = " + b"{a = " * 3000 + b"1" + b"}" * 3000,
                                    "nested too deeply"),
    "10 MB value": (b'device_id = "' + b"x" * 10_000_000 + b'"\n', "larger than 256 KiB"),
    "NUL byte": (b'device_id = "a\x00"\n', "invalid TOML"),
    "200 KB value": (b'device_id = "' + b"x" * 200_000 + b'"\n',
                     'device_id: must be 1-64 characters'),
    "200 KB key": (b'device_id = "a"\n' + b"k" * 200_000 + b" = 1\n", "unknown key"),
    "nested but parseable": (b'device_id = "a"\n[camera]\nsource = ' + b"[" * 200 + b"]" * 200,
                             "camera.source: must be a quoted string (got an array)"),
    "a date": (b"device_id = 1979-05-27T07:32:00Z\n", "device_id: must be a quoted string"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_files_give_one_short_line(name: str, tmp_path: Path) -> None:
    raw, expected = HOSTILE[name]
    f = tmp_path / "moodcam.toml"
    f.write_bytes(raw)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    (line,) = exc.value.problems
    assert expected in line
    # Values and keys are echoed cut to 60 characters, so a line stays readable.
    assert len(line) < 300 + len(str(f)), line


def test_warnings_cut_long_values_too(tmp_path: Path) -> None:
    f = tmp_path / "moodcam.toml"
    f.write_text('device_id = "a"\n[model]\ndir = "/' + "d" * 100_000 + '"\n')
    err = io.StringIO()
    assert check_config_command(f, out=io.StringIO(), err=err) == 0
    (line,) = [ln for ln in err.getvalue().splitlines() if "model.dir" in ln]
    assert len(line) < 150 and "(100001 characters) cannot be checked" in line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.toml")


def test_missing_device_id_says_how_to_add_it(tmp_path: Path) -> None:
    assert problems("[camera]\nwidth = 320\n", tmp_path) == [
        'device_id: required; add a line such as: device_id = "shop-12"']


@pytest.mark.parametrize(("toml", "line"), [
    ("[mqtt]\nport = 70000", "mqtt.port: must be <= 65535 (got 70000)"),
    ("[mqtt]\nport = \"1883\"", 'mqtt.port: must be an integer (got "1883")'),
    ("[mqtt]\nenabled = \"yes\"", 'mqtt.enabled: must be true or false (got "yes")'),
    ("[camera]\nmax_fps = 0", "camera.max_fps: must be > 0 (got 0)"),
    ("[camera]\nretry_initial_s = 5.0\nretry_max_s = 2.0",
     "camera.retry_max_s: must be >= retry_initial_s (5) (got 2)"),
    ("[detector]\nkind = \"dnn\"",
     "detector.kind: must be 'auto', 'yunet' or 'haar' (got \"dnn\")"),
    ("[aggregate]\nwindow_s = 7", "aggregate.window_s: must divide 3600"),
    ("[aggregate]\nwindow_s = 70", "aggregate.window_s: must divide 3600"),
    ("[mqtt.tls]\ncert_file = \"/c.pem\"", "mqtt.tls.key_file: required when cert_file is set"),
    ("[log]\nlevel = \"loud\"", "log.level: must be one of DEBUG, INFO"),
    ("camera = 3", "camera: must be a table ([camera] section) (got 3)"),
    ("[campaign]\ntopic = \"signage/+/now\"", "campaign.topic: must not contain the MQTT"),
    ("[mqtt]\nhost = \"mqtt://broker\"", "mqtt.host: must be a bare host name"),
])
def test_wrong_values_name_the_key_and_fix(toml: str, line: str, tmp_path: Path) -> None:
    (got,) = problems(f'device_id = "a"\n{toml}\n', tmp_path)
    assert got.startswith(line), got


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    out = problems('device_id = "a b"\n[mqtt]\nport = 0\nkeepalive_s = 1\n[spool]\n'
                   'max_windows = 0\n', tmp_path)
    assert [line.split(":")[0] for line in out] == [
        "device_id", "mqtt.port", "mqtt.keepalive_s", "spool.max_windows"]


@pytest.mark.parametrize("device_id", [
    "", "a/b", "a+b", "a#", "with space", "x" * 65, "tab\t", "nul\x00", "ümlaut"])
def test_bad_device_ids(device_id: str) -> None:
    with pytest.raises(ConfigError, match=r"^device_id: must be 1-64 characters"):
        parse_config({"device_id": device_id})


@pytest.mark.parametrize("device_id", ["shop-12", "a", "Shop_12.b-3", "x" * 64])
def test_good_device_ids(device_id: str) -> None:
    assert parse_config({"device_id": device_id}).device_id == device_id


@pytest.mark.parametrize(("prefix", "why"), [
    ("", "must not be empty"), ("a/+/b", "wildcards"), ("a/#", "wildcards"),
    ("/moodcam", "start or end"), ("moodcam/", "start or end"), ("a//b", "empty levels"),
    ("a\x00b", "NUL"), ("a\nb", "line breaks"),
])
def test_bad_topic_prefixes(prefix: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"^mqtt.topic_prefix: .*{why}"):
        parse_config({"device_id": "a", "mqtt": {"topic_prefix": prefix}})


def test_good_topic_prefixes_and_friendly_types() -> None:
    cfg = parse_config({"device_id": "a", "mqtt": {"topic_prefix": "acme/stores/berlin"},
                        "camera": {"source": 0, "max_fps": 15}, "log": {"level": "debug"}})
    assert cfg.mqtt.topic_prefix == "acme/stores/berlin"
    assert cfg.camera.source == "0" and cfg.camera.max_fps == 15.0
    assert cfg.log.level == "DEBUG"


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('device_id = "shop-12"\n[mqtt]\nhost = "broker.local"\n')
    out, err = io.StringIO(), io.StringIO()
    assert check_config_command(good, out, err) == 0
    (summary,) = out.getvalue().splitlines()
    assert "shop-12" in summary and "broker.local:1883" in summary
    bad = tmp_path / "bad.toml"
    bad.write_text('device_id = "shop-12"\n[mqtt]\nport = 70000\n[camera]\nsorce = 1\n')
    out, err = io.StringIO(), io.StringIO()
    assert check_config_command(bad, out, err) == 2
    assert out.getvalue() == ""
    assert sorted(err.getvalue().splitlines()) == [
        "camera.sorce: unknown key; did you mean 'source'?",
        "mqtt.port: must be <= 65535 (got 70000)"]


def test_check_config_warns_but_passes_the_example() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_config_command(EXAMPLE, out, err) == 0
    assert "warning: device_id: still 'change-me'" in err.getvalue()


def test_password_from_file_or_systemd_credential_never_shown(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    cfg = MqttConfig(username="u", password_file=pw)
    secret = resolve_password(cfg, environ={})
    assert secret is not None and secret.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-systemd")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    secret = resolve_password(MqttConfig(username="u"), environ=env)
    assert secret is not None and secret.get_secret_value() == "from-systemd"
    assert resolve_password(MqttConfig(), environ={}) is None
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: cannot read"):
        resolve_password(MqttConfig(password_file=tmp_path / "missing"), environ={})


def test_model_dir_resolution(tmp_path: Path) -> None:
    assert resolve_model_dir(parse_config({"device_id": "a", "model": {"dir": str(tmp_path)}})
                             .model) == tmp_path
    default = resolve_model_dir(default_config("a").model)
    assert default.name in ("models", "current")


def test_config_is_immutable() -> None:
    cfg = default_config("a")
    with pytest.raises(ValueError):
        cfg.mqtt.port = 1  # type: ignore[misc]
