"""The model card's Reproduce section: every run a model is built from, from its state."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

from training.cli import _parser
from training.fit import FitOptions
from training.fit_cli import fit_options
from training.lineage import fit_command, lineage
from training.runstate import options_json

# What a session's invocation sets and a recipe does not.
_SESSION = ("resume", "export_now", "stop_by", "data")


def _recipe(opts: FitOptions) -> dict[str, object]:
    return {k: v for k, v in options_json(opts).items() if k not in _SESSION}


def _parsed(command: str) -> FitOptions:
    argv = shlex.split(command)
    assert argv[:2] == ["moodcam-train", "fit"]
    return fit_options(_parser().parse_args(argv[1:]))


def _write_run(run: Path, opts: FitOptions) -> None:
    (run / "checkpoint").mkdir(parents=True)
    state = {"epoch": opts.epochs, "options": options_json(opts)}
    (run / "checkpoint" / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("changes", [
    {},
    {"width": 2.0, "camera_copies": 0.5, "label_smoothing": 0.1, "mixup": 0.2,
     "init_seed": 2, "teacher": Path("runs/t"), "distill_alpha": 0.3},
    {"augment": False, "flip_average": False, "count_thresholds": False,
     "zoom_views": (1.0, 0.9), "align": "eyes", "version": "2026.12-x", "size": 48},
    {"members": (Path("runs/a"), Path("runs/b")), "thresholds_against": Path("OLD/models"),
     "stop_by": 1.0e9, "resume": True},
])
def test_a_runs_command_rebuilds_its_options(changes: dict[str, Any]) -> None:
    opts = replace(FitOptions(data=Path("fer.zip"), out=Path("runs/x")), **changes)
    command = fit_command(options_json(opts))
    assert "--stop-by" not in command  # a deadline belongs to a session, not to the recipe
    assert _recipe(_parsed(command)) == _recipe(opts)


def test_lineage_lists_teachers_and_members_first_each_once(tmp_path: Path) -> None:
    base = FitOptions(data=Path("fer.zip"), out=tmp_path / "g", width=2.0)
    g, m = base, replace(base, out=tmp_path / "m", init_seed=2)
    n = replace(base, out=tmp_path / "n", members=(g.out, m.out))
    o = replace(base, out=tmp_path / "o", teacher=n.out)
    t = replace(base, out=tmp_path / "t", camera_copies=0.5)
    for opts in (g, m, n, o, t):
        _write_run(opts.out, opts)
    shipped = replace(base, out=tmp_path / "w", members=(t.out, o.out, g.out))

    steps = lineage(options_json(shipped), "fer.zip")

    assert [_parsed(c).out for c in steps] == [t.out, g.out, m.out, n.out, o.out]
    assert _recipe(_parsed(steps[3])) == _recipe(n)


def test_a_missing_run_is_named_not_guessed(tmp_path: Path) -> None:
    opts = FitOptions(data=Path("fer.zip"), out=tmp_path / "s", teacher=tmp_path / "gone")
    assert lineage(options_json(opts)) == [
        f"(run {tmp_path / 'gone'}: its state is gone, so its command is not known)"]
