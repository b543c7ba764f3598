"""moodcam-report's terminal table and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from analyst.report import NO_CONTENT, Group, Report
from analyst.stats import Association, pct

# Always in the CSV (the contract scripts rely on), even when a model lacks the label.
CSV_MOODS = ("happy", "sad")


def _num(x: float | None, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if x is None else f"{x:{fmt}}{unit}"


def _share(g: Group, mood: str) -> str:
    s = g.share(mood)
    low, high = s.interval
    if s.share is None or low is None or high is None:
        return "-"
    return f"{pct(s.share)} ({100 * low:.1f}-{100 * high:.1f})"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*head), fmt.format(*("-" * w for w in widths)),
            *(fmt.format(*r) for r in rows)]


def group_rows(groups: Sequence[Group], moods: Sequence[str],
               what: str) -> tuple[list[str], list[list[str]]]:
    head = [what, "viewers", "shown h", "viewers/h", "dwell mean", "dwell median",
            *(f"{m} % (95% CI)" for m in moods)]
    rows = [[g.key, str(g.viewers), f"{g.shown_s / 3600:.2f}", _num(g.viewers_per_hour),
             _num(g.dwell_mean, unit=" s"), _num(g.dwell_median, unit=" s"),
             *(_share(g, m) for m in moods)] for g in groups]
    return head, rows


def test_line(name: str, a: Association | None) -> str:
    if a is None:
        return f"{name}: not enough data (needs two campaigns and two moods with viewers)"
    p = "p < 0.001" if a.p_value < 0.001 else f"p = {a.p_value:.3f}"
    return f"{name}: {a.statistic:.1f} on {a.df} df, {p} ({a.n} classified viewers)"


def quality_line(r: Report) -> str:
    q = r.quality
    return (f"{q.windows} windows from {len(r.devices)} devices ({q.streams} streams); "
            f"missing (seq gaps) {q.missing}; unsynced clock {q.unsynced}; recovered "
            f"{q.recovered}; camera delivered nothing {q.dead}; rejected messages {q.rejects}")


def period(r: Report) -> str:
    if r.first is None or r.last is None:
        return "no windows"
    return f"{r.first:%Y-%m-%d %H:%M} to {r.last:%Y-%m-%d %H:%M} UTC"


def text(r: Report) -> str:
    out = [f"moodcam report: {period(r)} (generated {r.generated:%Y-%m-%d %H:%M} UTC)",
           quality_line(r), ""]
    if not r.campaigns:
        out.append("No windows in the database for this selection.")
        return "\n".join(out) + "\n"
    out += ["Campaigns (mood shares of classified viewers; 'unknown' excluded)",
            *_table(*group_rows(r.campaigns, r.moods, "campaign")), ""]
    c = r.comparison
    out.append(f"Comparison of {len(c.campaigns)} campaigns, within the same device and hour "
               f"({c.strata} device-hours where two or more were seen, {c.shared_viewers} "
               "classified viewers):")
    out.append("  " + test_line("Pooled chi-square (ignores hour and device)", c.pooled))
    out.append("  " + test_line("Stratified Cochran-Mantel-Haenszel", c.stratified))
    out += [f"  - {sentence}" for *_, sentence in c.pairs]
    out += ["", "Devices", *_table(*group_rows(r.devices, r.moods, "device")), "",
            f"Hours of day ({r.tz})", *_table(*group_rows(r.hours, r.moods, "hour"))]
    if r.device_health:
        out += ["", "Device health (latest status)"]
        out += _table(["device", "availability", "camera", "fps", "spool", "model"],
                      [[str(d["device_id"]), str(d["availability"] or "-"),
                        str(d["camera_state"] or "-"), _num(d["fps"]),  # type: ignore[arg-type]
                        str(d["spool_depth"] if d["spool_depth"] is not None else "-"),
                        str(d["model_version"] or "-")] for d in r.device_health])
    return "\n".join(out) + "\n"


def csv_text(r: Report) -> str:
    moods = list(CSV_MOODS) + [m for m in r.moods if m not in CSV_MOODS]
    head = ["content_id", "windows", "shown_s", "viewers", "viewers_per_hour",
            "classified_viewers", "unknown_viewers", "dwell_mean_s", "dwell_median_s"]
    for m in moods:
        head += [f"{m}_viewers", f"{m}_share", f"{m}_low", f"{m}_high"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)

    def f(x: float | None, digits: int = 4) -> str:
        return "" if x is None else f"{x:.{digits}f}"

    for g in r.campaigns:
        row = ["" if g.key == NO_CONTENT else g.key, g.windows, f(g.shown_s, 1), g.viewers,
               f(g.viewers_per_hour, 2), g.classified, g.labels.get("unknown", 0),
               f(g.dwell_mean, 2), f(g.dwell_median, 2)]
        for m in moods:
            s = g.share(m)
            low, high = s.interval
            row += [s.k, f(s.share), f(low), f(high)]
        w.writerow(row)
    return buf.getvalue()
