"""The Grafana provisioning files: every panel's SQL runs on a real PostgreSQL with demo data.

Grafana cannot be installed here, so this test does what Grafana's PostgreSQL datasource
does with a panel: expand its macros ($__timeFilter, $__timeGroupAlias) and template
variables ($device, filled by running the variable's own query), run the SQL, and read the
columns. Every panel must return the columns listed below and at least one row.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

from analyst.collect import parse, synth
from analyst.db import Store, connect
from tests.collect_support import ROOT

GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "moodcam.json"
START = datetime(2026, 11, 24, 7, tzinfo=UTC)
HOURS = 6

# Panel title -> the columns it must return (Grafana binds fields by these names).
EXPECTED: dict[str, list[str]] = {
    "Devices online": ["online", "camera_not_ok", "devices"],
    "Rejected messages": ["rejected"],
    "Devices: availability and camera": [
        "device_id", "availability", "availability_at", "state", "camera_state", "fps",
        "spool_depth", "model_version", "clock_synchronized", "last_window_end", "status_at"],
    "Viewers per campaign": ["campaign", "viewers", "hours_on_screen", "viewers_per_hour"],
    "Mood share per campaign": ["campaign", "classified_viewers", "happy_share", "sad_share"],
    "Viewers per hour by campaign": ["time", "metric", "viewers"],
    "Happy and sad share over time": ["time", "happy_share", "sad_share"],
    "Dwell time": ["time", "dwell_mean_s", "dwell_max_s"],
    "Frames per minute by device (0 = camera delivered nothing)":
        ["time", "metric", "frames_per_minute"],
    "Missing windows (seq gaps) per device":
        ["device_id", "stream", "windows", "first_seq", "last_seq", "missing"],
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """Grafana's PostgreSQL macros, as Grafana expands them, and template variables."""
    def group(m: re.Match[str], alias: bool) -> str:
        interval = re.fullmatch(r"(\d+)([smhd])", m.group(2).strip())
        assert interval, f"unknown interval {m.group(2)!r}"
        n, unit = interval.groups()
        s = int(n) * _UNITS[unit]
        out = f"floor(extract(epoch from {m.group(1)})/{s})*{s}"
        return out + ' AS "time"' if alias else out

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)", lambda m: group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
                 sql)
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in sql, f"a macro or variable this test does not know: {sql}"
    return sql


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out += [p, *p.get("panels", [])]  # collapsed rows hold their panels
    return [p for p in out if p.get("type") != "row"]


@pytest.fixture(scope="module")
def demo_db(postgres: Any) -> Engine:
    engine = connect(postgres.create_database("grafana_demo"))
    at = START + timedelta(hours=HOURS)
    topic = "moodcam/{}/{}"
    recs: list[Any] = [parse.parse(topic.format(w["device_id"], "mood"), synth.encode(w),
                                   "moodcam", at) for w in synth.demo_fleet(START, HOURS)]
    for d, camera in ((1, "ok"), (2, "ok"), (3, "lost")):
        dev = f"shop-{d}"
        recs.append(parse.parse(topic.format(dev, "status"), synth.encode(synth.status(
            dev, camera=camera, state="running" if camera == "ok" else "degraded")),
            "moodcam", at))
        recs.append(parse.parse(topic.format(dev, "availability"),
                                b"online" if d < 3 else b"offline", "moodcam", at))
    recs.append(parse.parse("moodcam/shop-1/mood", b"{broken", "moodcam", at))
    result = Store(engine).write(recs)
    assert result.new == 3 * HOURS * 60 - 5 and result.rejected == 1
    return engine


def test_datasource_and_provider_files_are_complete() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/moodcam.yaml").read_text())
    (source,) = ds["datasources"]
    assert ds["apiVersion"] == 1 and source["type"] == "grafana-postgresql-datasource"
    assert source["jsonData"]["database"] and source["secureJsonData"]["password"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/moodcam.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    dash = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in panels(dash)}
    uids |= {v["datasource"]["uid"] for v in dash["templating"]["list"]}
    assert uids == {source["uid"]}, "every panel must use the provisioned datasource"
    assert {p["title"] for p in panels(dash)} == set(EXPECTED), "a panel without a check"


def test_every_panel_query_runs_on_postgres_with_demo_data(demo_db: Engine) -> None:
    dash = json.loads(DASHBOARD.read_text())
    start, end = START, START + timedelta(hours=HOURS)
    with demo_db.connect() as c:
        (var,) = dash["templating"]["list"]
        devices = [r[0] for r in c.execute(text(var["query"]))]
        assert devices == ["shop-1", "shop-2", "shop-3"]
        variables = {var["name"]: ", ".join(f"'{d}'" for d in devices)}  # "All"
        for p in panels(dash):
            for target in p["targets"]:
                sql = expand(target["rawSql"], start, end, variables)
                result = c.execute(text(sql))
                cols = list(result.keys())
                got = [tuple(r) for r in result]
                assert cols == EXPECTED[p["title"]], p["title"]
                assert got, f"{p['title']}: no rows"
                if target["format"] == "time_series":
                    assert cols[0] == "time"
                    assert all(isinstance(float(r[0]), float) for r in got)
                values = [v for r in got for v in r if v is not None]
                assert values, f"{p['title']}: only NULLs"


def test_panels_show_what_the_demo_data_holds(demo_db: Engine) -> None:
    """Not only non-empty: the numbers are the right ones (promo-a is the happier campaign,
    the dead camera shows as 0 frames and not-ok)."""
    dash = {p["title"]: p for p in panels(json.loads(DASHBOARD.read_text()))}
    variables = {"device": "'shop-1', 'shop-2', 'shop-3'"}
    end = START + timedelta(hours=HOURS)

    def run(title: str) -> list[tuple[Any, ...]]:
        sql = expand(dash[title]["targets"][0]["rawSql"], START, end, variables)
        with demo_db.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]

    shares = {r[0]: r for r in run("Mood share per campaign")}
    assert shares["promo-a"][2] == pytest.approx(3 / 5)
    assert shares["promo-b"][2] == pytest.approx(1 / 5)
    assert run("Devices online")[0] == (2, 1, 3)
    frames = [r for r in run("Frames per minute by device (0 = camera delivered nothing)")
              if r[1] == "shop-3"]
    assert frames[0][2] > 0 and frames[-1][2] == 0
    assert run("Rejected messages") == [(1,)]
    gaps = run("Missing windows (seq gaps) per device")
    assert [(r[0], r[5]) for r in gaps] == [("shop-2", 5), ("shop-1", 0), ("shop-3", 0)]
