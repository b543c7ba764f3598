"""`fit --members`: finished runs averaged into one model that exports, reports and teaches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import TINY, fit_tiny, write_tree

pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

from training.distill import load_teacher


@pytest.mark.slow
def test_an_ensemble_averages_its_members_exports_reports_and_teaches(tmp_path: Path) -> None:
    data = write_tree(tmp_path / "data", TINY, seed=5)
    a, b = tmp_path / "a", tmp_path / "b"
    for run, width in ((a, "1"), (b, "1.5")):
        p = fit_tiny(data, run, "--epochs", "1", "--width", width)
        assert p.returncode == 0, p.stderr[-3000:]
    ens = tmp_path / "ens"
    p = fit_tiny(data, ens, "--members", f"{a},{b}", "--zoom-views", "1.0")
    assert p.returncode == 0, p.stderr[-3000:]
    assert (ens / "model.tflite").stat().st_size > (a / "model.tflite").stat().st_size
    manifest = json.loads((ens / "manifest.json").read_text())
    assert [m["run"] for m in manifest["training"]["members"]] == [str(a), str(b)]
    assert manifest["training"]["members"][1]["width"] == 1.5
    assert "an ensemble of 2 fit runs" in (ens / "report.md").read_text()
    assert "ensemble (logits averaged) of a (" in (ens / "MODEL_CARD.md").read_text()

    # Its float model is exactly the mean of the members' best logits.
    faces = np.random.default_rng(0).random((5, 32, 32, 1), dtype=np.float32)
    whole = load_teacher(ens, 32, "hsno", "none").predict(faces, verbose=0)
    parts = [load_teacher(r, 32, "hsno", "none").predict(faces, verbose=0) for r in (a, b)]
    np.testing.assert_allclose(whole, (parts[0] + parts[1]) / 2, rtol=1e-5, atol=1e-5)

    # It teaches a student like any finished run.
    p = fit_tiny(data, tmp_path / "student", "--epochs", "1", "--teacher", str(ens))
    assert p.returncode == 0, p.stderr[-3000:]
    # Its card says how to rebuild it: both members, then the ensemble, then the student.
    card = (tmp_path / "student" / "MODEL_CARD.md").read_text().split("## Reproduce")[1]
    order = [card.index(f"--out {run}") for run in (a, b, ens, tmp_path / "student")]
    assert order == sorted(order), card
    assert "--width 1.5" in card


@pytest.mark.slow
def test_members_that_saw_other_faces_or_another_split_are_refused(tmp_path: Path) -> None:
    data = write_tree(tmp_path / "data", TINY, seed=6)
    a = tmp_path / "a"
    p = fit_tiny(data, a, "--epochs", "1")
    assert p.returncode == 0, p.stderr[-3000:]

    def member_with(name: str, **changed: object) -> Path:
        run = tmp_path / name
        shutil.copytree(a, run)
        state_path = run / "checkpoint" / "state.json"
        state = json.loads(state_path.read_text())
        state["options"].update(changed)
        state_path.write_text(json.dumps(state))
        return run

    cases = [
        ([a, member_with("seed", seed=99)], "hold out the same validation faces"),
        ([a, member_with("size", size=48)], "see the same faces"),
        ([a], "at least two"),
        ([a, tmp_path / "data"], "not a fit run"),
    ]
    for i, (runs, message) in enumerate(cases):
        out = tmp_path / f"ens{i}"
        p = fit_tiny(data, out, "--members", ",".join(map(str, runs)))
        assert p.returncode == 2 and message in p.stderr, p.stderr[-2000:]
        assert "Traceback" not in p.stderr
    p = fit_tiny(data, tmp_path / "both", "--members", f"{a},{a}", "--teacher", str(a))
    assert p.returncode == 2 and "--members and --teacher" in p.stderr
    p = fit_tiny(data, tmp_path / "copies", "--members", f"{a},{a}", "--camera-copies", "0.5")
    assert p.returncode == 2 and "--members and --camera-copies" in p.stderr
    assert not (tmp_path / "copies" / "camera_copies.npz").exists()


@pytest.mark.slow
def test_init_seed_reseeds_training_but_holds_out_the_same_faces(tmp_path: Path) -> None:
    """Two seeds of one recipe compare on the same validation faces and can be averaged."""
    data = write_tree(tmp_path / "data", TINY, seed=7)
    a, b = tmp_path / "a", tmp_path / "b"
    for run, seed in ((a, "1"), (b, "2")):
        p = fit_tiny(data, run, "--epochs", "1", "--init-seed", seed)
        assert p.returncode == 0, p.stderr[-3000:]
    faces = np.random.default_rng(0).random((5, 32, 32, 1), dtype=np.float32)
    out = [load_teacher(r, 32, "hsno", "none").predict(faces, verbose=0) for r in (a, b)]
    assert not np.allclose(out[0], out[1], atol=1e-4)  # other weights...
    p = fit_tiny(data, tmp_path / "ens", "--members", f"{a},{b}", "--zoom-views", "1.0")
    assert p.returncode == 0, p.stderr[-3000:]  # ...the same split, so they average
