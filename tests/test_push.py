"""deploy/push-model and the Ansible push playbook against a small fleet on loopback.

Each "host" is a real OpenSSH server on 127.0.0.1 (throwaway host and client keys) whose
sessions see that device's config through MOODCAM_CONFIG, a model store in a temporary
root and a real `moodcam run` daemon (sample camera) publishing to a real mosquitto. A
model push must be picked up by the daemon on SIGHUP, proven by its retained status.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device.cli import main as moodcam_main
from device.modelstore import ModelStore
from tests.broker import Broker, Subscriber, free_port, make_broker, mosquitto_binary
from tests.modelbundles import bundle, sha_of

ROOT = Path(__file__).resolve().parent.parent
PUSH = ROOT / "deploy" / "push-model"
SSHD = Path("/usr/sbin/sshd")
MOODCAM = Path(sys.executable).parent / "moodcam"
pytestmark = [pytest.mark.timeout(300), pytest.mark.broker, pytest.mark.slow]


@dataclass
class Device:
    name: str
    root: Path
    config: Path
    store: ModelStore
    port: int = 0
    sshd: subprocess.Popen[bytes] | None = None
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"

    def sha(self) -> str | None:
        cur = self.store.current()
        return cur.manifest.model_sha256 if cur and cur.manifest else None


@dataclass
class Fleet:
    devices: list[Device]
    base: Path
    sub: Subscriber
    ssh_opts: list[str]
    keys: Path


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port}")


def start_sshd(d: Device, keys: Path) -> None:
    """An sshd just for this device: its sessions get the device's config."""
    d.port = free_port()
    conf = d.root / "sshd_config"
    conf.write_text("\n".join([
        f"Port {d.port}", "ListenAddress 127.0.0.1", f"HostKey {keys / 'host_key'}",
        f"AuthorizedKeysFile {keys / 'client_key.pub'}", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "PermitRootLogin prohibit-password", "StrictModes no", f"PidFile {d.root}/sshd.pid",
        "Subsystem sftp /usr/lib/openssh/sftp-server", "LogLevel ERROR",
        f"SetEnv MOODCAM_CONFIG={d.config}",
    ]) + "\n")
    d.sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(conf)],
                              stderr=(d.root / "sshd.log").open("wb"))
    wait_port(d.port, d.sshd, f"sshd for {d.name}")


def start_daemon(d: Device) -> None:
    log = (d.root / "daemon.log").open("wb")
    d.daemon = subprocess.Popen([sys.executable, "-m", "device.cli", "run", "--config",
                                 str(d.config)], stdout=log, stderr=log, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


def make_device(base: Path, name: str, broker: Broker) -> Device:
    root = base / name
    etc, state = root / "etc" / "moodcam", root / "var" / "lib" / "moodcam"
    etc.mkdir(parents=True)
    state.mkdir(parents=True)
    config = etc / "moodcam.toml"
    config.write_text(
        f'device_id = "{name}"\n'
        '[camera]\nsource = "sample"\nmax_fps = 2.0\n'
        f'[model]\ndir = "{state / "models" / "current"}"\n'
        f'[spool]\npath = "{state / "spool.sqlite"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nstatus_interval_s = 1\n')
    first = bundle(base, f"{name}-first")
    assert moodcam_main(["model", "install", str(first), "--config", str(config),
                         "--no-reload"]) == 0
    return Device(name, root, config, ModelStore(state / "models"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install openssh-client)")
    if not SSHD.exists():
        pytest.skip("sshd is missing (apt-get install openssh-server)")
    if not MOODCAM.exists():
        pytest.skip(f"{MOODCAM} is missing: install the project into this venv")
    mosquitto_binary()
    base = tmp_path_factory.mktemp("fleet")
    keys = base / "keys"
    keys.mkdir()
    for k in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / k)],
                       check=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    broker = make_broker(base, ["allow_anonymous true", "persistence false"])
    broker.start()
    devices = [make_device(base, n, broker) for n in ("shop-a", "shop-b")]
    sub = Subscriber(broker, ["moodcam/+/status"])
    try:
        for d in devices:
            start_sshd(d, keys)
            start_daemon(d)
        assert sub.wait_for(lambda: {m.topic for m in sub.messages} == {
            f"moodcam/{d.name}/status" for d in devices}, timeout=90), "daemons did not start"
        ssh_opts = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                    f"IdentityFile={keys / 'client_key'}", "IdentitiesOnly=yes",
                    "LogLevel=ERROR"]
        yield Fleet(devices, base, sub, ssh_opts, keys)
    finally:
        sub.close()
        for d in devices:
            for p in (d.daemon, d.sshd):
                if p is not None and p.poll() is None:
                    p.terminate()
                    p.wait(30)
        broker.kill()


def push(fleet: Fleet, bundle_path: Path, *hosts: str, extra: tuple[str, ...] = ()
         ) -> tuple[int, list[str]]:
    opts = [a for o in fleet.ssh_opts for a in ("--ssh-option", o)]
    p = subprocess.run([sys.executable, str(PUSH), str(bundle_path), *hosts, *opts,
                        "--remote-moodcam", str(MOODCAM), "--install-args", "--timeout 30",
                        *extra], capture_output=True, text=True, timeout=240, check=False)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout.splitlines()


def result(lines: list[str], host: str) -> str:
    found = [ln for ln in lines if ln.startswith(host + ": ")]
    assert len(found) == 1, lines
    return found[0]


def latest_status(fleet: Fleet, name: str) -> dict[str, Any]:
    msgs = [m for m in fleet.sub.messages if m.topic == f"moodcam/{name}/status"]
    status: dict[str, Any] = json.loads(msgs[-1].payload)
    return status


def devices(fleet: Fleet) -> list[Device]:
    return fleet.devices


def test_dry_run_touches_nothing(fleet: Fleet) -> None:
    a, b = devices(fleet)
    before = (a.sha(), b.sha())
    v = bundle(fleet.base, "dry", 5)
    rc, lines = push(fleet, v, a.host, b.host, extra=("--dry-run",))
    assert rc == 0
    assert "would run: scp" in result(lines, a.host) and "model install" in result(lines, b.host)
    assert (a.sha(), b.sha()) == before


def test_two_hosts_roll_forward_and_a_refused_one_fails_alone(fleet: Fleet) -> None:
    a, b = devices(fleet)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    v1 = bundle(fleet.base, "v1", 1)
    rc, lines = push(fleet, v1, a.host, down, b.host, extra=("--parallel", "3"))
    assert rc == 1
    for d in (a, b):
        line = result(lines, d.host)
        assert ": OK: installed " in line and "frames flowing" in line, lines
        assert d.sha() == sha_of(1)
        status = latest_status(fleet, d.name)
        assert status["model"]["sha256"] == sha_of(1)
        assert status["state"] == "running"
    assert "FAILED: ssh failed:" in result(lines, down) and "refused" in result(lines, down)
    assert lines[-1] == "push-model: 2 ok, 1 failed"
    for d in (a, b):
        assert "reloaded: model moodcam-fer" in (d.root / "daemon.log").read_text()


def _bad_checksum(m: dict[str, Any]) -> None:
    m["model_sha256"] = "f" * 64


def test_bad_bundle_is_refused_and_the_running_model_stays(fleet: Fleet) -> None:
    a, b = devices(fleet)
    before = (a.sha(), b.sha())
    bad = bundle(fleet.base, "bad", 6, edit=_bad_checksum)
    rc, lines = push(fleet, bad, a.host, b.host)
    assert rc == 1
    for d in (a, b):
        line = result(lines, d.host)
        assert "FAILED: moodcam: error: model model.tflite sha256" in line, lines
        assert "does not match manifest" in line and line.endswith("(exit 1)")
    assert (a.sha(), b.sha()) == before
    assert not list(Path("/var/tmp").glob("moodcam-bundle-*"))  # uploads cleaned up
    for d in (a, b):
        assert latest_status(fleet, d.name)["model"]["sha256"] == before[0]


def test_canary_failure_stops_the_rollout(fleet: Fleet) -> None:
    a, b = devices(fleet)
    before = (a.sha(), b.sha())
    down = f"127.0.0.1:{free_port()}"
    v2 = bundle(fleet.base, "v2", 2)
    rc, lines = push(fleet, v2, down, a.host, b.host, extra=("--canary", "1"))
    assert rc == 1
    assert "FAILED: ssh failed" in result(lines, down)
    for d in (a, b):
        assert "FAILED: skipped: a canary host failed" in result(lines, d.host)
    assert (a.sha(), b.sha()) == before
    # A healthy canary lets the rest follow.
    rc, lines = push(fleet, v2, a.host, b.host, extra=("--canary", "1"))
    assert rc == 0, lines
    assert (a.sha(), b.sha()) == (sha_of(2), sha_of(2))


def test_rollback_over_ssh(fleet: Fleet) -> None:
    _, b = devices(fleet)
    cur = b.sha()
    prev = b.store.previous()
    assert prev is not None and prev.manifest is not None
    user_host, port = b.host.rsplit(":", 1)
    opts = [a for o in fleet.ssh_opts for a in ("-o", o)]
    p = subprocess.run(["ssh", *opts, "-p", port, user_host,
                        f"{MOODCAM} model rollback --timeout 30"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"rolled back to {prev.id}") and "frames flowing" in p.stdout
    assert b.sha() == prev.manifest.model_sha256 != cur
    status = latest_status(fleet, b.name)
    assert status["model"]["sha256"] == prev.manifest.model_sha256


def test_ansible_push_playbook(fleet: Fleet) -> None:
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) \
        or shutil.which("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-playbook is missing (pip install ansible-core)")
    a, b = devices(fleet)
    keys, base = fleet.keys, fleet.base
    inv = base / "inventory.ini"
    inv.write_text(
        "[moodcam]\n" + "".join(
            f"{d.name} ansible_host=127.0.0.1 ansible_port={d.port} moodcam_config={d.config}\n"
            for d in (a, b))
        + "[moodcam:vars]\n"
        f"ansible_user={getpass.getuser()}\nmoodcam_become=false\n"
        f"ansible_ssh_private_key_file={keys / 'client_key'}\n"
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        f"ansible_python_interpreter={shutil.which('python3') or '/usr/bin/python3'}\n"
        f"moodcam_bin={MOODCAM}\nmoodcam_model_args=--timeout 30\n")
    v3 = bundle(base, "v3", 3)
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_PIPELINING": "True",
           "ANSIBLE_LOCAL_TEMP": str(base / "ansible-local"),
           "ANSIBLE_REMOTE_TMP": str(base / "ansible-remote")}
    cmd = [playbook, "-i", str(inv), str(ROOT / "deploy" / "ansible" / "push-model.yml"),
           "-e", f"bundle={v3}"]
    before = (a.sha(), b.sha())
    check = subprocess.run([*cmd, "--check"], capture_output=True, text=True, env=env,
                           timeout=240, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (a.sha(), b.sha()) == before
    real = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240,
                          check=False)
    assert real.returncode == 0, real.stdout + real.stderr
    assert (a.sha(), b.sha()) == (sha_of(3), sha_of(3))
    assert real.stdout.count("frames flowing") == 2
    for d in (a, b):
        assert latest_status(fleet, d.name)["model"]["sha256"] == sha_of(3)
        assert f"{d.name}" in real.stdout and "failed=0" in real.stdout
    # A bad bundle fails the canary, and the rest of the fleet is left alone.
    bad = bundle(base, "bad-ansible", 7, edit=_bad_checksum)
    real = subprocess.run([*cmd[:-1], f"bundle={bad}"], capture_output=True, text=True,
                          env=env, timeout=240, check=False)
    assert real.returncode != 0
    assert "does not match manifest" in real.stdout
    assert (a.sha(), b.sha()) == (sha_of(3), sha_of(3))
