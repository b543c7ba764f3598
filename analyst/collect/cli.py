"""`moodcam-collect`: store every mood window from MQTT into SQLite or PostgreSQL.

    moodcam-collect --mqtt HOST:PORT --db URL [--prefix moodcam] [--group NAME]
    moodcam-collect bench --db URL [--windows N]

Runs until SIGTERM/SIGINT, then finishes its batch and exits 0. Bad arguments or an
unreachable database at start: a one-line error and exit 2 / 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from analyst.collect.collector import Collector, Settings

log = logging.getLogger("moodcam-collect")


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:1883)")
    return host, int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moodcam-collect",
        description="Store moodcam mood windows, device status and availability from MQTT "
                    "into SQLite or PostgreSQL, each window exactly once. "
                    "`moodcam-collect bench --help` measures the store rate.")
    p.add_argument("--mqtt", type=host_port, default=("127.0.0.1", 1883), metavar="HOST:PORT",
                   help="broker (default 127.0.0.1:1883)")
    p.add_argument("--db", metavar="URL",
                   help="sqlite:///PATH or postgresql://user@host:port/db (default: an "
                        "SQLite file in the user's state dir, ~/.local/state/moodcam/moodcam.db)")
    p.add_argument("--prefix", default="moodcam", help="the devices' mqtt.topic_prefix")
    p.add_argument("--group", metavar="NAME",
                   help="share the mood subscription with other collectors of this group "
                        "(MQTT 5 $share/NAME/...): each window goes to one of them")
    p.add_argument("--client-id", metavar="ID",
                   help="the persistent session's fixed id; distinct per collector "
                        "(default moodcam-collect-<hostname>)")
    p.add_argument("--session-expiry", type=int, default=7 * 24 * 3600, metavar="S",
                   help="seconds the broker keeps queueing for this collector while it is "
                        "down (default 604800, a week)")
    p.add_argument("--batch", type=int, default=500, metavar="N",
                   help="most messages per transaction (default 500)")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the broker password (never given on the command line)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from analyst.collect.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.batch < 1:
        print("moodcam-collect: --batch must be at least 1", file=sys.stderr)
        return 2
    password = None
    if args.password_file:
        try:
            password = args.password_file.read_text().strip()
        except OSError as e:
            print(f"moodcam-collect: --password-file: {e}", file=sys.stderr)
            return 2
    from analyst.db import connect

    try:
        engine = connect(args.db)
    except ValueError as e:
        print(f"moodcam-collect: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        print(f"moodcam-collect: cannot open the database: {str(e).splitlines()[0]}",
              file=sys.stderr)
        return 1
    host, port = args.mqtt
    settings = Settings(host=host, port=port, prefix=args.prefix,
                        client_id=args.client_id or f"moodcam-collect-{socket.gethostname()}",
                        group=args.group, session_expiry_s=args.session_expiry,
                        batch_max=args.batch, receive_maximum=max(2 * args.batch, 100),
                        username=args.username, password=password)
    collector = Collector(settings, engine)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: finishing the batch", signal.Signals(signum).name)
        collector.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("collecting %s/+/{mood,status,availability} from %s:%d into %s (pid %d)",
             args.prefix, host, port, engine.url.render_as_string(hide_password=True),
             os.getpid())
    collector.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
