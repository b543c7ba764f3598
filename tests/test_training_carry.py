"""A run stopped in one session goes on in the next from its committed checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.synthetic import TINY, fit_tiny, write_tree

pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

ROOT = Path(__file__).resolve().parents[1]


def recipe(*args: str, runs: Path, carry: Path,
           **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNS": str(runs), "CARRY": str(carry), **env_extra}
    return subprocess.run(["bash", str(ROOT / "training" / "experiments.sh"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def epoch(run: Path) -> int:
    return int(json.loads((run / "checkpoint" / "state.json").read_text())["epoch"])


PAST = "2000-01-01 00:00"  # --stop-by long gone: no room for any epoch after the first


@pytest.mark.slow
def test_stopped_by_deadline_then_carried_resumes_at_the_carried_epoch(tmp_path: Path) -> None:
    data = write_tree(tmp_path / "data", TINY, seed=8)
    first, carry = tmp_path / "session1", tmp_path / "carry"
    # A session's end: a fresh run trains its first epoch (it has no epoch time to go by),
    # then stops with its checkpoint saved, exits 3 and exports nothing.
    p = fit_tiny(data, first / "r", "--epochs", "3", "--stop-by", PAST)
    assert p.returncode == 3, p.stderr[-3000:]
    assert "stopped at epoch 1 of 3" in p.stderr and "--resume" in p.stderr
    assert epoch(first / "r") == 1 and not (first / "r" / "model.tflite").exists()
    # issue13f carries out exactly the runs that `finished` says stopped short.
    assert recipe("finished", "r", runs=first, carry=carry).returncode == 1
    p = recipe("carry-out", "r", runs=first, carry=carry)
    assert p.returncode == 0 and "r at epoch 1" in p.stdout, p.stderr
    assert sorted(f.name for f in (carry / "r").iterdir()) == [
        "best.weights.h5", "last.keras", "state.json"]

    second = tmp_path / "session2"  # the next session: its run directories are gone
    p = recipe("carry-in", runs=second, carry=carry)
    assert p.returncode == 0 and "carry-in: r at epoch 1" in p.stdout, p.stderr
    # Resumed past its deadline, judged by the epochs it has taken: no epoch is started.
    before = json.loads((carry / "r" / "state.json").read_text())
    p = fit_tiny(data, second / "r", "--epochs", "3", "--resume", "--stop-by", PAST)
    assert p.returncode == 3 and "stopped at epoch 1 of 3" in p.stderr, p.stderr[-3000:]
    assert "training.pipeline: data:" not in p.stderr  # refused before loading the data
    assert json.loads((second / "r" / "checkpoint" / "state.json").read_text()) == before
    p = fit_tiny(data, second / "r", "--epochs", "2", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming {second / 'r'} from epoch 1" in p.stderr
    state = json.loads((second / "r" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and state["history"]["loss"][:1] == before["history"]["loss"]
    assert (second / "r" / "model.tflite").exists()
    assert recipe("finished", "r", runs=second, carry=carry).returncode == 0  # its new --epochs
    assert recipe("finished", "missing", runs=second, carry=carry).returncode == 1

    # A run directory that got further is never rolled back to the carried epoch.
    p = recipe("carry-in", runs=second, carry=carry)
    assert p.returncode == 0 and "carry-in" not in p.stdout
    assert epoch(second / "r") == 2

    p = recipe("carry-out", "missing", runs=second, carry=carry)
    assert p.returncode == 1 and "holds no checkpoint" in p.stderr

    # A checkpoint past CARRY_PART_BYTES (a width-3 one is 5 MB) is carried in parts, each
    # within the limit, and joined back byte for byte; a later carry-out leaves no stale part.
    parts, third = tmp_path / "carry-parts", tmp_path / "session3"
    p = recipe("carry-out", "r", runs=second, carry=parts, CARRY_PART_BYTES="65536")
    assert p.returncode == 0 and "r at epoch 2" in p.stdout, p.stderr
    names = sorted(f.name for f in (parts / "r").iterdir())
    assert "state.json" in names and "last.keras" not in names and "best.weights.h5" not in names
    assert {"last.keras.part-000", "last.keras.part-001", "best.weights.h5.part-000"} <= set(names)
    assert all(f.stat().st_size <= 65536 for f in (parts / "r").iterdir() if ".part-" in f.name)
    p = recipe("carry-in", runs=third, carry=parts)
    assert p.returncode == 0 and "carry-in: r at epoch 2" in p.stdout, p.stderr
    for name in ("last.keras", "best.weights.h5", "state.json"):
        carried = (third / "r" / "checkpoint" / name).read_bytes()
        assert carried == (second / "r" / "checkpoint" / name).read_bytes(), name
    assert sorted(f.name for f in (third / "r" / "checkpoint").iterdir()) == [
        "best.weights.h5", "last.keras", "state.json"]
    p = recipe("carry-out", "r", runs=second, carry=parts)  # whole again under the default
    assert p.returncode == 0
    assert sorted(f.name for f in (parts / "r").iterdir()) == [
        "best.weights.h5", "last.keras", "state.json"]
    p = fit_tiny(data, third / "r", "--epochs", "3", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming {third / 'r'} from epoch 2" in p.stderr
