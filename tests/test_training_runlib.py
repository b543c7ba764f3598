"""How training/runlib.sh's `run` starts a fit (the recipes in experiments.sh use it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fit_args(tmp_path: Path, *args: str, extra: str = "", stop_by: str = "") -> list[str]:
    """The arguments `run out ARGS...` gives moodcam-train (a stand-in that records them)."""
    fake = tmp_path / ".venv" / "bin" / "moodcam-train"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > args.txt\n')
    fake.chmod(0o755)
    env = {**os.environ, "DATA": "fer.zip", "RUNS": "runs", "EXTRA": extra, "STOP_BY": stop_by}
    p = subprocess.run(["bash", "-c", f'. "{ROOT}/training/runlib.sh"; run out "$@"', "run",
                        *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    assert "end out exit 0" in p.stdout
    return (tmp_path / "args.txt").read_text().splitlines()


def test_only_runs_that_make_camera_copies_are_given_the_shared_cache(tmp_path: Path) -> None:
    args = fit_args(tmp_path, "--width", "3", "--camera-copies", "0.5")
    assert args[:6] == ["fit", "--data", "fer.zip", "--out", "runs/out", "--resume"]
    assert "--copies-cache" in args and args[args.index("--copies-cache") + 1] == (
        "runs/camera-copies")
    assert "--copies-cache" not in fit_args(tmp_path, "--width", "3")
    # EXTRA (a smoke test's options) counts too.
    assert "--copies-cache" in fit_args(tmp_path, "--width", "2", extra="--camera-copies 0.25")


def test_stop_by_becomes_every_fits_deadline(tmp_path: Path) -> None:
    args = fit_args(tmp_path, "--width", "2", stop_by="2026-12-08 06:08")
    assert args[args.index("--stop-by") + 1] == "2026-12-08 06:08"
    assert "--stop-by" not in fit_args(tmp_path, "--width", "2")
