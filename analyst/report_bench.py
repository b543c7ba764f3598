"""How moodcam-report's time grows with the database: generate windows, time the report.

    python -m analyst.report_bench --db URL [--devices 100] [--days 1,3,7] [--campaigns 4]

Writes synthetic windows straight into an EMPTY database (INSERT ... SELECT over a number
series, so generating a million windows takes seconds, not the collector's path): one
60 s window per device per minute, campaigns rotating every 5 minutes (so every device-hour
holds every campaign: the most strata the comparison can have), four labels. After each
step of --days it times the report (build, then each output format) and prints one line;
the last line extrapolates linearly to a year. Against a throwaway PostgreSQL:
    python -m tests.pg -- python -m analyst.report_bench --db {url}
"""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import Engine, text

from analyst.db import connect

T0 = 1795158000  # 2026-11-20T07:00:00Z: a whole hour
SERIES = {
    "postgresql": "SELECT generate_series({lo}, {hi} - 1) AS {col}",
    "sqlite": "WITH RECURSIVE s(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM s "
              "WHERE n + 1 < {hi}) SELECT n AS {col} FROM s",
}


def generate(engine: Engine, devices: int, minutes: tuple[int, int], campaigns: int) -> int:
    """Windows for minutes [lo, hi) of every device; returns how many were written."""
    lo, hi = minutes
    series = SERIES[engine.dialect.name]
    both = (f"({series.format(lo=0, hi=devices, col='d')}) AS dd CROSS JOIN "
            f"({series.format(lo=':lo', hi=':hi', col='m')}) AS mm")
    # Label counts from a cheap hash of (device, minute): varied but reproducible.
    counts = {"happy": "(d * 7 + m * 3) % 5", "sad": "(d * 5 + m * 11) % 4",
              "neutral": "(d + m * 7) % 3", "unknown": "CASE WHEN m % 7 = 0 THEN 1 ELSE 0 END"}
    total = " + ".join(f"({c})" for c in counts.values())
    ts = ("to_timestamp({e})" if engine.dialect.name == "postgresql"
          else "strftime('%Y-%m-%d %H:%M:%S.000000', {e}, 'unixepoch')")
    start, end = f"({T0} + m * 60)", f"({T0} + m * 60 + 60)"
    wid = "'bench-' || d || '/00c0ffee00c0ffee/' || (m + 1)"
    windows = f"""
        INSERT INTO windows (window_id, schema, device_id, stream, seq, start_ts, end_ts,
            start_epoch, end_epoch, duration_s, content_id, clock, recovered, model_name,
            model_version, model_sha256, viewers_total, detections_total, frames, fps,
            dwell_count, dwell_mean, dwell_median, dwell_max, dwell_total, raw, received_at)
        SELECT {wid}, 'moodcam/mood/2', 'bench-' || d, '00c0ffee00c0ffee', m + 1,
            {ts.format(e=start)}, {ts.format(e=end)}, {start}, {end}, 60.0,
            'promo-' || ((m / 5) % {campaigns}), 'synced', false, 'moodcam-fer', '1',
            '{"5e" * 32}', {total}, 20 * ({total}), 600, 10.0,
            {total}, CASE WHEN {total} > 0 THEN 5.0 + d % 9 END,
            CASE WHEN {total} > 0 THEN 4.0 + m % 11 END,
            CASE WHEN {total} > 0 THEN 30.0 END,
            CASE WHEN {total} > 0 THEN (5.0 + d % 9) * ({total}) END,
            '{{}}', {ts.format(e=end)}
        FROM {both}"""
    labels = " UNION ALL ".join(
        f"SELECT {wid}, '{lab}', {c}, 20 * ({c}) FROM {both}" for lab, c in counts.items())
    with engine.begin() as conn:
        conn.execute(text(windows), {"lo": lo, "hi": hi})
        conn.execute(text("INSERT INTO window_labels (window_id, label, viewers, detections) "
                          + labels), {"lo": lo, "hi": hi})
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE windows; ANALYZE window_labels"))
    return devices * (hi - lo)


def time_report(engine: Engine) -> dict[str, float]:
    from analyst.report import build
    from analyst.report_html import html_report
    from analyst.report_text import csv_text
    from analyst.report_text import text as text_report

    t = time.perf_counter()
    r = build(engine)
    out = {"build": time.perf_counter() - t}
    for name, fmt in (("text", text_report), ("csv", csv_text), ("html", html_report)):
        t = time.perf_counter()
        fmt(r)
        out[name] = time.perf_counter() - t
    out["strata"] = float(r.comparison.strata)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analyst.report_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--days", default="1,3,7", help="cumulative days to time at (1,3,7)")
    p.add_argument("--campaigns", type=int, default=4)
    args = p.parse_args(argv)
    days = sorted({float(d) for d in args.days.split(",")})
    engine = connect(args.db)
    done_min = 0
    windows = 0
    results = []
    print(f"{'days':>5} {'windows':>10} {'strata':>8} {'gen s':>7} {'build s':>8} "
          f"{'text s':>7} {'csv s':>6} {'html s':>7}")
    for d in days:
        hi = int(d * 1440)
        t = time.perf_counter()
        windows += generate(engine, args.devices, (done_min, hi), args.campaigns)
        gen = time.perf_counter() - t
        done_min = hi
        r = time_report(engine)
        results.append((windows, r["build"], r["html"]))
        print(f"{d:5g} {windows:10d} {int(r['strata']):8d} {gen:7.1f} {r['build']:8.2f} "
              f"{r['text']:7.2f} {r['csv']:6.2f} {r['html']:7.2f}", flush=True)
    if len(results) >= 2:
        (w1, t1, _), (w2, t2, html) = results[0], results[-1]
        per = (t2 - t1) / (w2 - w1)
        year = args.devices * 525600
        print(f"build: {1e6 * per:.2f} s per million windows (slope between the first and "
              f"last step); a year of {args.devices} devices ({year} windows): about "
              f"{t2 + per * (year - w2):.0f} s to build + {html:.0f} s of plots "
              "(linear extrapolation)")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
