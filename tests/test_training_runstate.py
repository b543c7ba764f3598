"""A run's saved state: fit, ensembles and the model card's lineage read it one way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.runstate import read_state, state_path


def test_a_run_without_state_has_none_and_a_saved_state_reads_back(tmp_path: Path) -> None:
    assert read_state(tmp_path / "never-started") is None
    state_path(tmp_path).parent.mkdir()
    state_path(tmp_path).write_text(json.dumps({"epoch": 3, "options": {"width": 2}}))
    assert read_state(tmp_path) == {"epoch": 3, "options": {"width": 2}}


@pytest.mark.parametrize("text", ['{"epoch": 3, "opt', "[1, 2]"])
def test_an_unreadable_state_is_an_error_naming_the_file_and_the_fix(
        tmp_path: Path, text: str) -> None:
    state_path(tmp_path).parent.mkdir()
    state_path(tmp_path).write_text(text)
    with pytest.raises(ValueError, match=r"state\.json: the run state is not"):
        read_state(tmp_path)


@pytest.mark.slow
def test_resuming_over_a_corrupt_state_stops_with_one_line_and_keeps_the_run(
        tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="training tests need the [train] extra")
    from tests.synthetic import TINY, fit_tiny, write_tree

    data = write_tree(tmp_path / "data", TINY, seed=3)
    run = tmp_path / "run"
    state_path(run).parent.mkdir(parents=True)
    state_path(run).write_text('{"epoch": 7, "hist')  # e.g. cut short by a full disk
    (run / "checkpoint" / "last.keras").write_bytes(b"a model's bytes")
    p = fit_tiny(data, run, "--epochs", "2", "--resume")
    assert p.returncode == 2, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("moodcam-train: error: ") and "restore it from" in last
    # Nothing was trained over: the progress the state describes can still be recovered.
    assert state_path(run).read_text() == '{"epoch": 7, "hist'
    assert (run / "checkpoint" / "last.keras").read_bytes() == b"a model's bytes"
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["last.keras",
                                                                      "state.json"]
