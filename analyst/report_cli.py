"""moodcam-report --db URL --format text|csv|html [--out FILE]: which campaign, with how
much certainty."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from analyst.report_query import Filters

log = logging.getLogger("moodcam.report")


def _when(text: str) -> float:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date/time (e.g. 2026-11-24 or 2026-11-24T07:00Z)") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time zone (e.g. UTC or Europe/Zurich)") from None
    return text


def _min_viewers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moodcam-report",
        description="Per-campaign viewers, dwell and mood shares (Wilson 95%% intervals) "
                    "from the collector's database, and which campaign differs, compared "
                    "within the same device and hour.")
    p.add_argument("--db", required=True,
                   help="the collector's database: sqlite:///PATH or postgresql://...")
    p.add_argument("--format", choices=("text", "csv", "html"), default="text")
    p.add_argument("--out", type=Path, help="write here (default: standard output)")
    p.add_argument("--since", type=_when, help="only windows starting at or after (UTC "
                                               "unless the time says otherwise)")
    p.add_argument("--until", type=_when, help="only windows starting before")
    p.add_argument("--device", action="append", default=[], help="only this device "
                   "(repeatable)")
    p.add_argument("--tz", type=_zone, default="UTC",
                   help="time zone of the hours-of-day table (default UTC)")
    p.add_argument("--plays", type=Path, metavar="CSV",
                   help="proof-of-play export (device_id,content_id,start,end): windows "
                        "without a content id take the content played over most of them")
    p.add_argument("--min-viewers", type=_min_viewers, default=30,
                   help="classified viewers each campaign needs before two are compared "
                        "(default 30)")
    return p


def _check_db(url: str) -> None:
    """Fail early, in one line, on a database that is not there: SQLAlchemy would create an
    empty SQLite file and report empty tables."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError(f"--db {url!r}: not a database URL; use sqlite:///PATH or "
                         "postgresql://user@host:port/db") from None
    if parsed.drivername.startswith("sqlite") and parsed.database \
            and not Path(parsed.database).expanduser().exists():
        raise ValueError(f"--db {url!r}: no such file (moodcam-collect creates it)")


def _write(out: Path | None, data: str) -> None:
    if out is None:
        sys.stdout.write(data)
        return
    # Write beside the target, then rename: a reader never sees half a report.
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".",
                               prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from analyst.db import connect
    from analyst.plays import read_plays
    from analyst.report import build
    from analyst.report_text import csv_text, text

    try:
        _check_db(args.db)
        if args.out is not None and not args.out.parent.is_dir():
            raise ValueError(f"--out {args.out}: directory {args.out.parent} does not exist")
        plays = read_plays(args.plays) if args.plays is not None else None
        engine = connect(args.db, migrate_schema=False)
        report = build(engine, filters=Filters(args.since, args.until, tuple(args.device)),
                       tz=args.tz, min_viewers=args.min_viewers, plays=plays)
    except ValueError as e:
        print(f"moodcam-report: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"moodcam-report: cannot read {make_url(args.db).render_as_string()}: {first}",
              file=sys.stderr)
        return 1
    if args.format == "html":
        from analyst.report_html import html_report

        data = html_report(report)
    else:
        data = csv_text(report) if args.format == "csv" else text(report)
    try:
        _write(args.out, data)
    except OSError as e:
        print(f"moodcam-report: cannot write {args.out}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
