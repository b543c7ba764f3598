"""`moodcam model install|list|rollback` on a real store with real bundles and models."""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from device.assemble import StartupError
from device.bundle import public_key_hex
from device.classify import Classifier
from device.cli import build_parser
from device.daemonctl import runs_model
from device.modelstore import ModelStore
from tests.broker import Broker, Subscriber, free_port
from tests.modelbundles import (
    MODELS,
    bundle,
    current_sha,
    golden_off,
    index_of,
    sha_of,
    shipped_files,
)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def model(*argv: str) -> tuple[int, str, str]:
    """Run `moodcam model ...` in-process, as cli.main would, capturing its output."""
    args = build_parser().parse_args(["model", *argv])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = args.func(args)
        except StartupError as e:
            print(f"moodcam: error: {e}", file=sys.stderr)
            rc = e.exit_code
    return rc, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("moodcam")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write_config(d: Path, store: Path, *lines: str, mqtt: str = "[mqtt]\nenabled = false\n"
                 ) -> Path:
    cfg = d / "moodcam.toml"
    model_lines = "".join(line + "\n" for line in lines)
    cfg.write_text(f'device_id = "store-test"\n[model]\ndir = "{store / "current"}"\n'
                   + model_lines + mqtt)
    return cfg


@pytest.fixture
def dev(tmp_path: Path) -> dict[str, Any]:
    """A device with the shipped model installed as its first version."""
    store = tmp_path / "models"
    cfg = write_config(tmp_path, store)
    rc, _out, err = model("install", str(bundle(tmp_path, "v0")), "--config", str(cfg))
    assert rc == 0, err
    return {"cfg": str(cfg), "store": ModelStore(store), "tmp": tmp_path}


def state(store: ModelStore) -> tuple[str | None, list[str]]:
    return store.current_id(), sorted(p.name for p in store.versions_dir.iterdir())


def test_install_list_and_reinstall(dev: dict[str, Any]) -> None:
    store, cfg = dev["store"], dev["cfg"]
    cur = store.current()
    assert cur is not None and cur.manifest is not None
    assert cur.manifest.model_sha256 == sha_of(0)
    # What the daemon reads works: `current` is a loadable model directory.
    assert Classifier.from_dir(store.current_link).manifest.model_sha256 == sha_of(0)
    assert os.readlink(store.current_link) == f"versions/{cur.id}"  # relative

    rc, out, _ = model("install", str(bundle(dev["tmp"], "again")), "--config", cfg)
    assert rc == 0 and "already current" in out
    rc, out, err = model("install", str(bundle(dev["tmp"], "v1", 1)), "--config", cfg)
    assert rc == 0, err
    assert "installed" in out and "no running daemon" in out
    rc, out, _ = model("list", "--config", cfg, "--json")
    listed = json.loads(out)
    assert [v["sha256"] for v in listed["versions"]] == [sha_of(1), sha_of(0)]
    assert [v["current"] for v in listed["versions"]] == [True, False]
    rc, out, _ = model("list", "--config", cfg)
    assert out.splitlines()[0].startswith("* ") and "last current" in out.splitlines()[1]


def _checksum(m: dict[str, Any]) -> None:
    m["model_sha256"] = "0" * 64


def _input_shape(m: dict[str, Any]) -> None:
    m["input"]["shape"] = [1, 48, 48, 1]
    m["preprocessing"]["size"] = 48


def _labels(m: dict[str, Any]) -> None:
    m["labels"] = ["happy", "sad", "angry", "surprised"]
    m["label_thresholds"] = {"happy": 0.4, "sad": 0.4}


BAD = {
    "truncated upload": (lambda t: _truncated(t), "not a readable tar (truncated upload?)"),
    "wrong checksum": (lambda t: bundle(t, "sum", edit=_checksum), "does not match manifest"),
    "wrong input shape": (lambda t: bundle(t, "shape", edit=_input_shape),
                          "input shape [1, 64, 64, 1] != manifest [1, 48, 48, 1]"),
    "other label set": (lambda t: bundle(t, "labels", edit=_labels),
                        "differ from the running model's happy,sad,neutral,other"),
    "golden outputs": (lambda t: golden_off(t, "golden"), "golden sample 0"),
    "missing file": (lambda t: t / "nope.tar", "bundle not found"),
    "link member": (lambda t: _with_link(t), "bundle members must be plain files"),
}


def _with_link(tmp: Path) -> Path:
    """A bundle whose model is a symlink to a file elsewhere on the device."""
    out = tmp / "link.tar"
    files = shipped_files()
    with tarfile.open(out, "w") as tar:
        for name, data in [("bundle.json", index_of(files)), *files.items()]:
            info = tarfile.TarInfo(name)
            if name == "model.tflite":
                info.type, info.linkname = tarfile.SYMTYPE, str(MODELS / "model.tflite")
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return out


def _truncated(tmp: Path) -> Path:
    good = bundle(tmp, "full", 2)
    cut = tmp / "cut.tar"
    cut.write_bytes(good.read_bytes()[:60_000])
    return cut


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bundles_leave_the_running_model(dev: dict[str, Any], case: str) -> None:
    make, expected = BAD[case]
    before = state(dev["store"])
    rc, out, err = model("install", str(make(dev["tmp"])), "--config", dev["cfg"])
    assert rc == 1 and out == ""
    assert expected in error_line(err)
    assert state(dev["store"]) == before  # nothing new, nothing left behind


def test_label_change_needs_the_flag(dev: dict[str, Any]) -> None:
    b = bundle(dev["tmp"], "labels", edit=_labels)
    rc, _, err = model("install", str(b), "--config", dev["cfg"], "--allow-label-change")
    assert rc == 0, err
    cur = dev["store"].current()
    assert cur.manifest.labels == ["happy", "sad", "angry", "surprised"]


def test_signatures(tmp_path: Path) -> None:
    seed, other = os.urandom(32), os.urandom(32)
    pub = tmp_path / "signing.pub"
    pub.write_text(public_key_hex(seed) + "\n")
    store = tmp_path / "models"
    cfg = str(write_config(tmp_path, store, f'public_key_file = "{pub}"'))
    cases = [("unsigned", None, "bundle is unsigned but a public key is configured"),
             ("wrong-key", other, "signature does not verify with the configured public key")]
    for name, key, expected in cases:
        rc, _, err = model("install", str(bundle(tmp_path, name, key=key)), "--config", cfg)
        assert rc == 1 and expected in error_line(err)
        assert ModelStore(store).current_id() is None
    rc, _out, err = model("install", str(bundle(tmp_path, "signed", key=seed)), "--config", cfg)
    assert rc == 0, err
    current = ModelStore(store).current()
    assert current is not None and current.signed
    # --public-key applies without a configured key, too.
    (tmp_path / "x").mkdir()
    cfg2 = str(write_config(tmp_path / "x", tmp_path / "other"))
    rc, _, err = model("install", str(bundle(tmp_path, "v1", 1, key=other)), "--config", cfg2,
                       "--public-key", str(pub))
    assert rc == 1 and "signature does not verify" in error_line(err)
    (tmp_path / "junk.pub").write_text("not a key\n")
    rc, _, err = model("install", str(bundle(tmp_path, "v1b", 1)), "--config", cfg2,
                       "--public-key", str(tmp_path / "junk.pub"))
    assert rc == 2 and "public key" in error_line(err)


def test_power_cut_leftovers_are_ignored_and_cleared(dev: dict[str, Any]) -> None:
    """What a crash at each step leaves: the daemon still loads the old model whole, and
    the next command clears the debris."""
    store: ModelStore = dev["store"]
    old = store.current_id()
    # Cut after a version was committed, before it became current.
    rc, _, err = model("install", str(bundle(dev["tmp"], "v1", 1)), "--config", dev["cfg"],
                       "--no-reload")
    assert rc == 0
    assert model("rollback", "--config", dev["cfg"], "--no-reload")[0] == 0
    committed = next(v for v in store.versions() if v.id != old)
    os.utime(committed.path, (0, 0))  # as commit() leaves it: never current
    # Cut during unpacking: a partial staging directory with a truncated model.
    part = store.versions_dir / ".tmp-deadbeef"
    part.mkdir()
    (part / "model.tflite").write_bytes(b"\x00" * 100)
    # Cut between creating the new link and renaming it over `current`.
    os.symlink("versions/.tmp-deadbeef", store.root / "current.tmp-0badf00d")

    assert store.current_id() == old
    assert Classifier.from_dir(store.current_link).manifest.model_sha256 == sha_of(0)
    rc, out, _ = model("list", "--config", dev["cfg"])
    assert ".tmp" not in out and "never current" in out
    # A never-current version is not what rollback goes back to.
    rc, _, err = model("rollback", "--config", dev["cfg"], "--no-reload")
    assert rc == 1 and "nothing to roll back to" in error_line(err)
    assert not part.exists() and not (store.root / "current.tmp-0badf00d").exists()
    assert store.current_id() == old


def test_rollback_and_keep_n(dev: dict[str, Any]) -> None:
    store: ModelStore = dev["store"]
    cfg = dev["cfg"]
    def current() -> str:
        now = store.current_id()
        assert now is not None
        return now

    ids = [current()]
    for n in (1, 2, 3):
        rc, _, err = model("install", str(bundle(dev["tmp"], f"v{n}", n)), "--config", cfg,
                           "--keep", "3")
        assert rc == 0, err
        ids.append(current())
    # Three kept: the current one and the two most recently current before it.
    assert sorted(v.id for v in store.versions()) == sorted(ids[1:])
    rc, out, _ = model("rollback", "--config", cfg)
    assert rc == 0 and store.current_id() == ids[2] and "rolled back to" in out
    rc, _, _ = model("rollback", "--config", cfg)  # back again, like `cd -`
    assert store.current_id() == ids[3]
    rc, _, _ = model("rollback", "--config", cfg, ids[1])
    assert rc == 0 and store.current_id() == ids[1]
    rc, _, err = model("rollback", "--config", cfg, "no-such-version")
    assert rc == 1 and "no version 'no-such-version'" in error_line(err)
    assert store.current_id() == ids[1]


def test_one_model_command_at_a_time(dev: dict[str, Any]) -> None:
    store: ModelStore = dev["store"]
    fd = os.open(store.root / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rc, _, err = model("install", str(bundle(dev["tmp"], "v1", 1)), "--config", dev["cfg"])
    finally:
        os.close(fd)
    assert rc == 1 and "another `moodcam model` command" in error_line(err)


def test_real_command_line(tmp_path: Path) -> None:
    store = tmp_path / "models"
    cfg = write_config(tmp_path, store)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MOODCAM_CONFIG": str(cfg)}
    cut = _truncated(tmp_path)
    p = subprocess.run([sys.executable, "-m", "device.cli", "model", "install", str(cut)],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 1
    assert error_line(p.stderr).startswith("moodcam: error: bundle cut.tar is not a readable")
    assert not (store / "current").exists()


def _daemon_config(tmp: Path, store: Path, port: int) -> Path:
    return write_config(tmp, store, mqtt=(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nstatus_interval_s = 1\n'
        '[camera]\nsource = "sample"\nmax_fps = 3.0\n'
        f'[spool]\npath = "{tmp / "spool.sqlite"}"\n'))


def newest_sha(sub: Subscriber) -> str:
    """The model sha256 of the newest status the subscriber has."""
    return str(json.loads(sub.messages[-1].payload)["model"]["sha256"])


@pytest.mark.broker
def test_daemon_picks_up_the_model_or_it_is_rolled_back(mosquitto: Broker, tmp_path: Path
                                                        ) -> None:
    store = tmp_path / "models"
    cfg = str(_daemon_config(tmp_path, store, mosquitto.port))
    assert model("install", str(bundle(tmp_path, "v0")), "--config", cfg)[0] == 0
    sub = Subscriber(mosquitto, ["moodcam/store-test/status"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    d = subprocess.Popen([sys.executable, "-m", "device.cli", "run", "--config", cfg],
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert sub.wait_for(lambda: len(sub.messages) > 0, timeout=60)
        rc, out, err = model("install", str(bundle(tmp_path, "v1", 1)), "--config", cfg,
                             "--timeout", "30")
        assert rc == 0, err
        assert f"pid {d.pid}" in out and "frames flowing" in out
        # `model` confirmed on its own subscription; this one may get the status a moment later.
        assert sub.wait_for(lambda: newest_sha(sub) == sha_of(1), timeout=10)
        # A daemon that stops answering: the new model is not confirmed, the old comes back.
        d.send_signal(signal.SIGSTOP)
        try:
            rc, out, err = model("install", str(bundle(tmp_path, "v2", 2)), "--config", cfg,
                                 "--timeout", "3")
        finally:
            d.send_signal(signal.SIGCONT)
        line = error_line(err)
        assert rc == 1 and "not confirmed within 3 s" in line
        assert f"rolled back to {ModelStore(store).current_id()}" in line
        assert current_sha(store) == sha_of(1)
        assert not any(sha_of(2)[:12] in v.id for v in ModelStore(store).versions())
        # Rollback through the daemon: confirmed by its status.
        rc, out, err = model("rollback", "--config", cfg, "--timeout", "30")
        assert rc == 0 and "frames flowing" in out, err
        assert sub.wait_for(lambda: newest_sha(sub) == sha_of(0), timeout=10), newest_sha(sub)
    finally:
        d.terminate()
        _, derr = d.communicate(timeout=30)
        sub.close()
    # The pending SIGHUPs of the stopped daemon and the rollback's may coalesce.
    assert derr.count("reloaded: model") >= 2, derr


def test_unreachable_broker_stops_before_the_swap(tmp_path: Path) -> None:
    """With a daemon to reload but no broker to confirm through, nothing changes."""
    store = tmp_path / "models"
    cfg = str(_daemon_config(tmp_path, store, free_port()))
    assert model("install", str(bundle(tmp_path, "v0")), "--config", cfg, "--no-reload")[0] == 0
    stand_in = subprocess.Popen(["sleep", "60"])  # a process to play the daemon's pid
    try:
        rc, _, err = model("install", str(bundle(tmp_path, "v1", 1)), "--config", cfg,
                           "--pid", str(stand_in.pid))
    finally:
        stand_in.kill()
        stand_in.wait()
    line = error_line(err)
    assert rc == 1 and "unreachable" in line and "--no-reload installs it" in line
    s = ModelStore(store)
    assert current_sha(store) == sha_of(0)
    assert [v.id for v in s.versions()] == [s.current_id()]


def test_runs_model_accepts_unrelated_faults_but_not_a_failed_reload() -> None:
    sha = "a" * 64
    base = {"state": "running", "model": {"sha256": sha}, "faults": {},
            "camera": {"state": "ok", "last_frame_age_s": 0.2}}
    assert runs_model(base, sha)
    junk = {**base, "state": "degraded", "faults": {"now_playing": "2 malformed payloads"}}
    assert runs_model(junk, sha)
    assert not runs_model({**junk, "faults": {"config": "reload failed: model: ..."}}, sha)
    assert not runs_model({**base, "state": "degraded",
                           "camera": {"state": "retrying", "last_frame_age_s": 9.0}}, sha)
    assert not runs_model({**base, "state": "stopping"}, sha)
    assert not runs_model(base, "b" * 64)
