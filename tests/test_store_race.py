"""Root installs models while the daemon's (compromised) user races it, for real.

The state directory belongs to an unprivileged user (`nobody`, via setpriv), as
/var/lib/moodcam belongs to moodcam; the store inside it is root's. That user swaps, renames
and symlinks everything it can write (the store's name, a directory of its own full of
links to root's files in the store's place, the bundle file root is about to read) while
root runs `moodcam model install` and `rollback` many times. Afterwards nothing outside the
store may have changed owner or mode, root must not have written into anything of the
attacker's, and `current` of the real store must always have been a verified bundle.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.bundle import BundleError, public_key_hex, verify_installed
from tests.modelbundles import bundle
from tests.test_modelstore import model, write_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
ITERATIONS = 150

ATTACKER = r'''
import os, random, sys, time
state, victims, stop = sys.argv[1], sys.argv[2], sys.argv[3]
store, bundle = os.path.join(state, "models"), os.path.join(state, "incoming.tar")
own = os.path.join(state, "own")
def quiet(f, *a):
    try:
        f(*a)
    except OSError:
        pass
# A look-alike store of the attacker's: links to root's files where root would write.
os.makedirs(os.path.join(own, "versions"), exist_ok=True)
for name in ("current", ".lock", "versions/.tmp-00000000", "versions/x"):
    quiet(os.symlink, os.path.join(victims, "secret"), os.path.join(own, name))
quiet(os.symlink, victims, os.path.join(own, "versions", "victims"))
moves = 0
while not os.path.exists(stop):
    what = random.randrange(5)
    if what == 0:    # the store's name -> root's secret directory
        quiet(os.rename, store, store + ".real"); quiet(os.symlink, victims, store)
    elif what == 1:  # the store's name -> the attacker's look-alike
        quiet(os.rename, store, store + ".real"); quiet(os.symlink, own, store)
    elif what == 2:  # the attacker's look-alike itself in the store's place
        quiet(os.rename, store, store + ".real"); quiet(os.rename, own, store)
    elif what == 3:  # the bundle root reads -> root's secret file
        quiet(os.rename, bundle, bundle + ".good")
        quiet(os.symlink, os.path.join(victims, "secret"), bundle)
    else:            # writing into the real store (refused: it is root's)
        for name in ("current", "versions/evil", ".lock.evil"):
            quiet(os.symlink, victims, os.path.join(store, name))
    time.sleep(random.random() * 0.004)
    # Put things back so that root's next command may get through.
    if os.path.isdir(store) and not os.path.islink(store) and os.stat(store).st_uid == os.getuid():
        quiet(os.rename, store, own)
    elif os.path.islink(store):
        quiet(os.unlink, store)
    quiet(os.rename, store + ".real", store)
    if os.path.islink(bundle):
        quiet(os.unlink, bundle)
    quiet(os.rename, bundle + ".good", bundle)
    moves += 1
    time.sleep(random.random() * 0.004)
print(moves)
'''


def snapshot(root: Path, skip: set[tuple[int, int]]) -> dict[str, tuple[int, int, int]]:
    """(mode, uid, gid) of every entry below root, without following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in skip:
                dirnames[:] = [d for d in dirnames if d != n]
                continue
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid)
    return out


@pytest.fixture
def arena() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("the race needs root and setpriv (CI runs as root)")
    d = Path(tempfile.mkdtemp(prefix="moodcam-race-"))
    d.chmod(0o755)  # nobody must reach the state directory inside
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_root_never_follows_the_daemon_users_paths(arena: Path) -> None:
    seed = os.urandom(32)
    key = public_key_hex(seed)
    victims = arena / "victims"
    (victims / "private").mkdir(parents=True)
    (victims / "secret").write_text("root only\n")
    (victims / "secret").chmod(0o600)
    (victims / "private").chmod(0o700)
    state_dir = arena / "state"
    state_dir.mkdir()
    os.chown(state_dir, 65534, 65534)  # the daemon's user owns the state directory
    (arena / "signing.pub").write_text(key + "\n")
    cfg = str(write_config(arena, state_dir / "models",
                           f'public_key_file = "{arena / "signing.pub"}"'))
    bundles = arena / "bundles"
    bundles.mkdir()
    made = [bundle(bundles, f"v{n}", n, key=seed) for n in range(3)]
    assert model("install", str(made[0]), "--config", cfg)[0] == 0
    store_dir = state_dir / "models"
    st = store_dir.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o750)
    real = os.open(store_dir, os.O_RDONLY | os.O_DIRECTORY)  # the store, wherever it is moved
    real_path = Path(f"/proc/self/fd/{real}")
    skip = {(st.st_dev, st.st_ino)}
    before_victims = snapshot(victims, set())
    secret = (victims / "secret").read_bytes()

    problems: list[str] = []
    checks = 0
    done = threading.Event()

    def check_current() -> None:
        nonlocal checks
        while not done.is_set():
            try:
                target = os.readlink(real_path / "current")
                verify_installed(real_path / target, key)
                checks += 1
            except FileNotFoundError:
                pass  # a version pruned between readlink and reading: the next look decides
            except (BundleError, OSError) as e:
                problems.append(f"current is not a verified bundle: {e}")
            time.sleep(0.002)

    stop = arena / "stop"
    attacker = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
         "-c", ATTACKER, str(state_dir), str(victims), str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checker = threading.Thread(target=check_current)
    checker.start()
    outcomes: dict[str, int] = {}
    try:
        for i in range(ITERATIONS):
            incoming = state_dir / "incoming.tar"  # where the attacker can swap it
            if not incoming.is_symlink():
                shutil.copy(made[1 + i % 2], state_dir / "incoming.tmp")
                os.replace(state_dir / "incoming.tmp", incoming)
            if i % 3 == 2:
                rc, _, err = model("rollback", "--config", cfg, "--no-reload")
            else:
                rc, _, err = model("install", str(incoming), "--config", cfg, "--no-reload")
            key_ = "ok" if rc == 0 else err.strip().splitlines()[-1][:70]
            outcomes[key_] = outcomes.get(key_, 0) + 1
            assert "Traceback" not in err, err
    finally:
        stop.touch()
        done.set()
        checker.join()
        out, err = attacker.communicate(timeout=30)
    assert attacker.returncode == 0, err
    moves = int(out.strip())
    print(f"{ITERATIONS} root commands ({outcomes}), {moves} attacker moves, "
          f"{checks} checks of current")
    assert not problems, problems[:3]
    assert checks > 0 and moves > ITERATIONS
    assert outcomes.get("ok", 0) >= 5, outcomes  # the race was run, not just refused
    # Nothing outside the store changed owner or mode, root's secret is intact.
    assert snapshot(victims, set()) == before_victims
    assert (victims / "secret").read_bytes() == secret
    # Root wrote nothing into the attacker's files: all of them still belong to nobody.
    # One exception: when a command ran while the store's name was empty (the real store
    # moved away, not yet put back), root made a fresh store there: a directory of its own,
    # 0750, not a symlink, with only root's entries inside (its `current` link included).
    # That is root's, not a write into anything the attacker controls.
    entries = snapshot(state_dir, skip)
    fresh = entries.get("models")
    fresh_store = (fresh is not None and stat.S_ISDIR(fresh[0]) and fresh[1] == 0
                   and stat.S_IMODE(fresh[0]) == 0o750)
    for name, (_mode, uid, _gid) in entries.items():
        if name in ("incoming.tar", "incoming.tmp"):
            continue
        if fresh_store and (name == "models" or name.startswith("models/")):
            assert uid == 0, f"{name} in root's fresh store belongs to uid {uid}"
            continue
        assert uid == 65534, f"{name} belongs to uid {uid}"
    # The real store (wherever the attacker left it) is root's and its current verifies.
    st = os.fstat(real)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o750)
    for entry in (real_path / "versions").iterdir():
        assert entry.lstat().st_uid == 0 and not entry.is_symlink()
    verify_installed(real_path / os.readlink(real_path / "current"), key)
    os.close(real)
