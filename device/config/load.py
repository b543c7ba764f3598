"""Loading the config file and explaining what is wrong with it, one line per problem."""

from __future__ import annotations

import difflib
import json
import os
import sys
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from device.config.model import STATE_DIR, Config, ModelConfig, MqttConfig

CREDENTIAL_NAME = "mqtt_password"
EXAMPLE_DEVICE_ID = "shop-12"
# A real config is a few KiB; anything this large is not one, and is refused before
# it is parsed (the daemon re-reads the file on every SIGHUP).
MAX_CONFIG_BYTES = 256 * 1024
# Values and keys echoed in an error are cut to this many characters.
ECHO_CHARS = 60


class ConfigError(ValueError):
    """An unusable config; `problems` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def default_config(device_id: str) -> Config:
    """The config every key of which is at its default."""
    return Config(device_id=device_id)


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """text cut to about `limit` characters, saying how long it really was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _position(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def read_toml(p: Path) -> dict[str, Any]:
    """The parsed file, or ConfigError with one line for anything that is not TOML."""
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError([f"{p}: cannot read the config file: {e.strerror or e}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{p}: larger than {MAX_CONFIG_BYTES // 1024} KiB, so not a "
                           "moodcam config (a real one is a few KiB); check the path"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: invalid TOML: byte 0x{raw[e.start]:02x} at "
                           f"{_position(raw, e.start)} is not UTF-8 (save the file as "
                           "UTF-8)"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{p}: invalid TOML: {clip(str(e), 200)}"]) from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively.
        raise ConfigError([f"{p}: invalid TOML: arrays or inline tables nested too "
                           "deeply"]) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raise ConfigError listing every problem."""
    return parse_config(read_toml(Path(path)))


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate already-parsed TOML data; raise ConfigError listing every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e)) from None
    except RecursionError:
        raise ConfigError(["(top level): values nested too deeply"]) from None


# --- turning pydantic's errors into "key.path: what is wrong and how to fix it" ---

_BOUNDS = {
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
}
_TYPE_WORDS = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a quoted string",
    "path_type": "must be a quoted path",
}


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(clip(value), ensure_ascii=False)
    if isinstance(value, int | float):
        return clip(json.dumps(value))
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _submodel(arg)
            if found:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _submodel(model.model_fields[part].annotation)
    return model


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    parent = _model_at(loc[:-1])
    if parent is None:
        return "unknown key"
    known = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1])[:100], known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return "unknown key; valid keys here: " + ", ".join(known)


def _describe(err: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str]:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    got = f" (got {_toml_repr(err['input'])})"
    if kind == "extra_forbidden":
        return loc, _unknown_key(loc)
    if kind == "missing":
        if loc == ("device_id",):
            return loc, f'required; add a line such as: device_id = "{EXAMPLE_DEVICE_ID}"'
        return loc, "required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a table ([{'.'.join(map(str, loc))}] section){got}"
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return loc, f"must be {sign} {shown}{got}"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return loc, ("must not be empty" if n == 1 else f"must be at least {n} characters")
    if kind == "string_too_long":
        return loc, f"must be at most {ctx.get('max_length')} characters"
    if kind in _TYPE_WORDS:
        return loc, _TYPE_WORDS[kind] + got
    msg = str(err["msg"])
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        # Model-level checks name the field first ("retry_max_s: must be ..."): point at it.
        head, sep, rest = msg.partition(": ")
        parent = _model_at(loc)
        if sep and parent is not None and head in parent.model_fields:
            return (*loc, head), rest
        if parent is None:
            return loc, msg + got
        return loc, msg
    msg = msg.replace("Input should be", "must be").replace("Input is", "is")
    return loc, msg + got


def describe_errors(exc: ValidationError) -> list[str]:
    """One 'dotted.key: problem and fix' line per validation error."""
    lines = []
    for err in exc.errors(include_url=False):
        loc, text = _describe(err)
        key = ".".join(clip(str(p)) for p in loc) or "(top level)"
        lines.append(f"{key}: {clip(text, 300)}")
    return lines


# --- resolving values that live outside the file ---


def resolve_password(
    mqtt: MqttConfig, environ: Mapping[str, str] | None = None
) -> SecretStr | None:
    """The broker password from `password_file` or the systemd credential, never logged."""
    env = os.environ if environ is None else environ
    if mqtt.password_file is not None:
        source, key = mqtt.password_file, "mqtt.password_file"
    elif env.get("CREDENTIALS_DIRECTORY"):
        source, key = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME, "mqtt password"
        if not source.is_file():
            return None
    else:
        return None
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError([f"{key}: cannot read {source}: {reason}"]) from None
    # Editors and `echo` add a trailing newline that is never part of the password.
    return SecretStr(text.rstrip("\r\n"))


def repo_models_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "models"


def resolve_model_dir(model: ModelConfig) -> Path:
    """Where the model lives: the configured dir, the deployed one, or the repo's models/."""
    if model.dir is not None:
        return model.dir
    deployed = STATE_DIR / "models" / "current"
    return deployed if deployed.is_dir() else repo_models_dir()


def config_warnings(cfg: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Things that are valid but probably not what the installer meant."""
    out = []
    if cfg.device_id == "change-me":
        out.append("device_id: still 'change-me'; give each device its own id")
    files: list[tuple[str, Path | None]] = [
        ("mqtt.password_file", cfg.mqtt.password_file),
        ("model.public_key_file", cfg.model.public_key_file),
        ("model.dir", cfg.model.dir),
    ]
    if cfg.mqtt.tls.enabled:
        t = cfg.mqtt.tls
        files += [("mqtt.tls.ca_file", t.ca_file), ("mqtt.tls.cert_file", t.cert_file),
                  ("mqtt.tls.key_file", t.key_file)]
    elif any((cfg.mqtt.tls.ca_file, cfg.mqtt.tls.cert_file)):
        out.append("mqtt.tls: files are set but mqtt.tls.enabled = false, so they are unused")
    if cfg.detector.kind == "yunet":
        files.append(("detector.yunet_model", cfg.detector.yunet_model))
    for key, path in files:
        if path is None:
            continue
        try:
            exists = path.exists()
        except OSError as e:  # e.g. a name too long for the file system
            out.append(f"{key}: {clip(str(path))} cannot be checked: {e.strerror or e}")
            continue
        if not exists:
            out.append(f"{key}: {clip(str(path))} does not exist (yet)")
    env = os.environ if environ is None else environ
    has_password = cfg.mqtt.password_file is not None or bool(env.get("CREDENTIALS_DIRECTORY"))
    if has_password and not cfg.mqtt.username:
        out.append("mqtt.username: empty, so the password is not sent; set the user name")
    if cfg.mqtt.username and not cfg.mqtt.tls.enabled and cfg.mqtt.host not in (
        "localhost", "127.0.0.1", "::1"
    ):
        out.append("mqtt.tls.enabled: false, so the password crosses the network unencrypted")
    return out


def summary(cfg: Config) -> str:
    """One line describing what this config will do."""
    m = cfg.mqtt
    if m.enabled:
        auth = f"user {m.username}" if m.username else "anonymous"
        broker = (f"mqtt {m.host}:{m.port} ({'tls' if m.tls.enabled else 'plain'}, {auth}) "
                  f"topics {m.topic_prefix}/{cfg.device_id}/")
    else:
        broker = "mqtt disabled"
    campaign = f"campaign {cfg.campaign.topic}" if cfg.campaign.topic else "no campaign topic"
    return (
        f"device {cfg.device_id}: camera {cfg.camera.source} {cfg.camera.width}x"
        f"{cfg.camera.height}@{cfg.camera.max_fps:g}fps, detector {cfg.detector.kind}, "
        f"{cfg.aggregate.window_s}s windows, {broker}, {campaign}, spool {cfg.spool.path}"
    )


def check_config_command(
    path: str | os.PathLike[str], out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """`moodcam check-config FILE`: 0 and a summary if valid, else 2 and one line per error."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for line in e.problems:
            print(line, file=err)
        return 2
    for line in config_warnings(cfg):
        print(f"warning: {line}", file=err)
    print(f"OK {path}: {summary(cfg)}", file=out)
    return 0
