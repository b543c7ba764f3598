"""moodcam-report's HTML: one self-contained file (PNG plots inlined as base64, inline CSS,
no script, nothing fetched), so it can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from analyst.report import Group, Report
from analyst.report_query import DWELL_BIN_S
from analyst.report_text import group_rows, period, quality_line, test_line

CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .2em .45em; border-bottom: 1px solid #ddd; text-align: right;
         white-space: nowrap; }
.scroll { overflow-x: auto; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; } img { max-width: 100%; display: block; margin: 1em 0; }
li { margin: .3em 0; }
"""


def _label(text: str) -> str:
    # matplotlib reads $...$ as mathematics; a content id is plain text.
    return text.replace("$", r"\$")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colors(r: Report) -> dict[str, str]:
    """One colour per campaign, the same in every plot."""
    return {g.key: f"C{i % 10}" for i, g in enumerate(r.campaigns)}


def viewers_plot(r: Report) -> Figure:
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    step = r.timeline_step_s
    for name in sorted(r.timeline):
        xs: list[float] = []
        ys: list[float] = []
        prev = None
        for b in sorted(r.timeline[name]):
            if prev is not None and b - prev > 1:
                # Not shown in between: a gap in the line, not a fall to zero.
                xs.append(float("nan"))
                ys.append(float("nan"))
            xs.append(float(date2num(datetime.fromtimestamp(b * step, UTC))))
            ys.append(r.timeline[name][b])
            prev = b
        ax.plot(xs, ys, marker="o", markersize=3, label=_label(name),
                color=_colors(r).get(name))
    unit = {60: "minute", 600: "10 minutes", 3600: "hour", 86400: "day"}.get(step, f"{step} s")
    ax.set_ylabel(f"viewers per {unit}")
    ax.set_ylim(bottom=0)
    ax.set_title("Viewers over time (UTC)")
    loc = AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))
    if r.timeline:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=.3)
    return fig


def shares_plot(r: Report) -> Figure:
    moods = r.moods or ["happy"]
    groups = [g for g in r.campaigns if g.classified > 0]
    fig = Figure(figsize=(10, 1.2 + 0.45 * max(2, len(groups))), layout="constrained")
    colors = _colors(r)
    axes = fig.subplots(1, len(moods), sharey=True, squeeze=False)[0]
    ys = list(range(len(groups)))
    for ax, mood in zip(axes, moods, strict=True):
        for y, g in zip(ys, groups, strict=True):
            s = g.share(mood)
            low, high = s.interval
            if s.share is None or low is None or high is None:
                continue
            ax.errorbar([s.share * 100], [y], xerr=[[100 * (s.share - low)],
                                                   [100 * (high - s.share)]],
                        fmt="o", capsize=4, color=colors[g.key])
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"{mood} share, % (95% Wilson)")
        ax.grid(alpha=.3, axis="x")
    axes[0].set_yticks(ys, [_label(g.key) for g in groups])
    axes[0].set_ylim(-0.7, len(groups) - 0.3)
    axes[0].invert_yaxis()
    fig.suptitle("Mood share of classified viewers per campaign")
    return fig


def dwell_plot(r: Report) -> Figure:
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax = fig.add_subplot()
    starts = [x for g in r.campaigns for x in g.dwell_hist]
    if starts:
        # About 40 bars over the observed range, in whole multiples of the SQL bin.
        top = max(starts) + DWELL_BIN_S
        width = max(DWELL_BIN_S, DWELL_BIN_S * round(top / 40 / DWELL_BIN_S))
        edges = [i * width for i in range(int(top // width) + 2)]
        colors = _colors(r)
        for g in r.campaigns:
            total = sum(g.dwell_hist.values())
            if not total:
                continue
            xs = sorted(g.dwell_hist)
            ax.hist(xs, bins=edges, weights=[100 * g.dwell_hist[x] / total for x in xs],
                    histtype="step", linewidth=1.8, color=colors[g.key],
                    label=_label(f"{g.key} (median {g.dwell_median:.1f} s)"))
        ax.legend(fontsize="small")
    ax.set_xlabel("dwell, s (each window's median, weighted by its viewers)")
    ax.set_ylabel("% of viewers")
    ax.set_title("Dwell distribution per campaign")
    ax.grid(alpha=.3)
    return fig


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _groups(groups: Sequence[Group], moods: Sequence[str], what: str) -> str:
    return _html_table(*group_rows(groups, moods, what))


def html_report(r: Report) -> str:
    e = html.escape
    c = r.comparison
    plots = [("viewers", "Viewers over time", viewers_plot(r)),
             ("shares", "Mood share per campaign with 95% intervals", shares_plot(r)),
             ("dwell", "Dwell distribution per campaign", dwell_plot(r))]
    imgs = "\n".join(f'<img id="plot-{pid}" alt="{e(alt)}" '
                     f'src="data:image/png;base64,{_png(fig)}">' for pid, alt, fig in plots)
    sentences = "".join(f"<li>{e(s)}</li>" for *_, s in c.pairs)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>moodcam report: {e(period(r))}</title><style>{CSS}</style></head><body>",
        f"<h1>moodcam report</h1><p>{e(period(r))}; generated "
        f"{r.generated:%Y-%m-%d %H:%M} UTC.</p>",
        f'<p class="note">{e(quality_line(r))}</p>',
        "<h2>Campaigns</h2>", _groups(r.campaigns, r.moods, "campaign"),
        '<p class="note">Shares are of classified viewers (faces the model was unsure about, '
        "'unknown', are excluded); intervals are Wilson 95%.</p>",
        imgs,
        "<h2>Which campaign?</h2>",
        f"<p>Compared within the same device and hour: {c.strata} device-hours where two or "
        f"more campaigns were seen, {c.shared_viewers} classified viewers.</p>",
        f"<ul><li>{e(test_line('Pooled chi-square (ignores hour and device)', c.pooled))}</li>"
        f"<li>{e(test_line('Stratified Cochran-Mantel-Haenszel', c.stratified))}</li></ul>",
        f"<ul>{sentences}</ul>",
        "<h2>Devices</h2>", _groups(r.devices, r.moods, "device"),
        f"<h2>Hours of day ({e(r.tz)})</h2>", _groups(r.hours, r.moods, "hour"),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
