"""`moodcam-collect bench` runs and stores what it claims (its figures are in docs/analysts.md;
no timing is asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collect_support import ROOT, analyst_broker, scalar

pytestmark = [pytest.mark.broker]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_bench_stores_every_window_and_prints_rates(kind: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    db = (f"sqlite:///{tmp_path}/bench.db" if kind == "sqlite"
          else request.getfixturevalue("pg_url"))
    broker = analyst_broker(tmp_path)
    try:
        r = subprocess.run([sys.executable, "-m", "analyst.collect.cli", "bench", "--db", db,
                            "--windows", "300", "--batch", "100", "--mqtt",
                            f"{broker.host}:{broker.port}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    finally:
        broker.kill()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [x.split(":")[0] for x in lines] == [f"store {kind}", f"mqtt+store {kind}"]
    for line in lines:
        assert re.search(r"\d+ windows/s wall, \d+ windows per CPU-second$", line), line
    assert scalar(db, "SELECT count(DISTINCT window_id) FROM windows") == 600
