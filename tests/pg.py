"""A real PostgreSQL for the tests: initdb + pg_ctl in a temp dir, on a free loopback port.

Fixtures: `postgres` (one server per test session), `pg_url` (a fresh, empty database on it
per test, so tests never see each other's rows) and `postgres_private` (a server of the test's
own, for tests that stop, kill or restart it).

initdb refuses to run as root, and CI runs as root: then the server runs as the `postgres`
user (Debian's postgresql package creates it), else as `nobody`, through runuser/setpriv, in a
directory that user owns (pytest's own tmp dirs are 0700 root, so that user could not enter them).

Also a command for benchmarks and manual runs:
    python -m tests.pg -- CMD ARGS...   (each '{url}' in ARGS becomes the server's URL)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"


def pg_bindir() -> Path | None:
    """Where initdb/pg_ctl live: $MOODCAM_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    env = os.environ.get("MOODCAM_PG_BIN")
    candidates = [Path(env)] if env else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
        if p.parent.name.isdigit() else 0, reverse=True)
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _run_as() -> tuple[list[str], str | None]:
    """The command prefix that drops root, and the user it drops to (None: not root)."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                    "--clear-groups"], user
        if shutil.which("runuser"):
            return ["runuser", "-u", user, "--"], user
    raise RuntimeError("running as root without a 'postgres' or 'nobody' user and "
                       "setpriv/runuser: initdb cannot run")


def free_port() -> int:
    from tests.broker import free_port as broker_free_port

    return broker_free_port()


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in its own directory; start() after stop()/kill() keeps its
    data and port (for outage tests)."""

    root: Path
    bindir: Path
    port: int = field(default_factory=free_port)
    host: str = HOST
    prefix: list[str] = field(default_factory=list)
    _dbs: int = 0

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> None:
        r = subprocess.run([*self.prefix, str(self.bindir / tool), *args], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}\n{self.log()[-3000:]}")

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")

    def start(self) -> None:
        # TCP on loopback only, no Unix socket (its default dir is root's /var/run/postgresql).
        opts = f"-h {self.host} -p {self.port} -k '' -c max_connections=50"
        self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "30",
                 "-o", opts, "start")

    def stop(self) -> None:
        """Clean, fast shutdown: connected clients are disconnected."""
        with contextlib.suppress(RuntimeError):
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """A crash: no checkpoint; the next start() replays the WAL."""
        with contextlib.suppress(RuntimeError):
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._dbs += 1
        name = name or f"t{self._dbs}_{os.getpid()}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def make_server() -> PostgresServer:
    """initdb a new cluster (about 2 s) and start it; raises if PostgreSQL is absent."""
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL's initdb/pg_ctl are not installed "
                                "(apt-get install postgresql)")
    prefix, user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="moodcam-pg-"))
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(root=root, bindir=bindir, prefix=prefix)
    try:
        server.init()
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


def _server_or_skip() -> PostgresServer:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; deploy/test.sh "
                    "does it): the PostgreSQL tests need a real server")
    return make_server()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = _server_or_skip()
    yield server
    server.remove()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.create_database()


@pytest.fixture
def postgres_private() -> Iterator[PostgresServer]:
    """A server of this test's own, free to be stopped, killed and restarted."""
    server = _server_or_skip()
    yield server
    server.remove()


def main(argv: list[str]) -> int:
    """Run a command against a throwaway server: `python -m tests.pg -- CMD {url} ...`."""
    args = argv[1:] if argv[:1] == ["--"] else argv
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    server = make_server()
    try:
        url = server.create_database("bench")
        t0 = time.monotonic()
        rc = subprocess.call([a.replace("{url}", url) for a in args])
        print(f"(tests.pg: command ran {time.monotonic() - t0:.1f} s against {url})",
              file=sys.stderr)
        return rc
    finally:
        server.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
