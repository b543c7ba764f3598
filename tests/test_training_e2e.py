"""A tiny end-to-end training run: fit -> int8 -> bundle -> device runtime -> classify."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from device.bundle import check_golden, load_golden
from device.bundleread import extract_bundle
from device.classify import Classifier
from device.manifest import load_manifest, manifest_schema
from device.preprocess import face_tensor
from tests.synthetic import face, write_tree

pytest.importorskip("tensorflow", reason="training tests need the [train] extra")

PER_CLASS = {"train": {"happy": 40, "sad": 40, "neutral": 40, "angry": 20, "surprise": 20},
             "test": {"happy": 12, "sad": 12, "neutral": 12, "angry": 6, "surprise": 6}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tiny")
    data = write_tree(base / "data", PER_CLASS, seed=3)
    out = base / "run"
    key = base / "signing.key"
    subprocess.run([sys.executable, "-m", "training.cli", "keygen", "--out", str(key)],
                   check=True, capture_output=True)
    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", "fit", "--data", str(data), "--out", str(out),
         "--labels", "hsno", "--size", "32", "--epochs", "16", "--batch", "32",
         "--lr", "5e-3", "--crop-scale", "1.0", "--no-augment", "--key", str(key),
         "--version", "test-1"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_run_leaves_everything_a_user_expects(tiny_run: Path) -> None:
    for name in ("model.tflite", "manifest.json", "golden.npz", "report.md", "MODEL_CARD.md",
                 "metrics.json", "training_curves.png", "confusion.png", "reliability.png",
                 "moodcam-fer-test-1.moodcam.tar"):
        assert (tiny_run / name).stat().st_size > 0, name
    report = (tiny_run / "report.md").read_text()
    assert "happy-vs-sad accuracy" in report and "UNCERTAIN" in report


def test_manifest_validates_against_its_schema(tiny_run: Path) -> None:
    import jsonschema

    data = json.loads((tiny_run / "manifest.json").read_text())
    jsonschema.validate(data, manifest_schema())
    m = load_manifest(tiny_run / "manifest.json")
    assert m.labels == ["happy", "sad", "neutral", "other"]
    assert m.input.shape == [1, 32, 32, 1] and m.input.dtype == "int8"
    assert m.input.scale == pytest.approx(1 / 255, rel=1e-3) and m.input.zero_point == -128
    assert m.output.dtype == "int8"
    assert m.metrics["int8_float_agreement"] >= 0.9
    # Mirror averaging is on by default; the zoomed views and each threshold are picked on
    # validation.
    assert m.flip_average
    view_acc = json.loads((tiny_run / "metrics.json").read_text())["validation"]["view_accuracy"]
    assert set(view_acc) == {"1", "1,0.9"}
    assert view_acc[",".join(f"{z:g}" for z in m.zoom_views)] == max(view_acc.values())
    assert set(m.label_thresholds) == set(m.labels)
    assert all(0.35 <= t <= 0.9 for t in m.label_thresholds.values())


def test_compare_tables_the_run(tiny_run: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "training.cli", "compare", str(tiny_run)],
                          capture_output=True, text=True, check=True)
    header, _, row = proc.stdout.strip().splitlines()
    assert "happy-vs-sad" in header and row.startswith("| run |")
    fitted = json.loads((tiny_run / "metrics.json").read_text())
    assert f"{fitted['happy_vs_sad']['accuracy']:.2%}" in row
    bad = subprocess.run([sys.executable, "-m", "training.cli", "compare",
                          str(tiny_run.parent / "data")], capture_output=True, text=True)
    assert bad.returncode != 0 and "no metrics.json" in bad.stderr


def test_bundle_installs_in_the_device_runtime_and_classifies(tiny_run: Path,
                                                              tmp_path: Path) -> None:
    bundle = tiny_run / "moodcam-fer-test-1.moodcam.tar"
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["bundle.json", "bundle.sig", "manifest.json",
                                  "model.tflite", "golden.npz"]
    pub = (tiny_run.parent / "signing.key.pub").read_text()
    manifest = extract_bundle(bundle, tmp_path / "m", public_key=pub)
    clf = Classifier(manifest, tmp_path / "m" / "model.tflite")
    check_golden(clf.interpreter.invoke, load_golden(tmp_path / "m" / "golden.npz"))
    rng = np.random.default_rng(99)
    labels = ["happy", "sad"] * 10
    hi, si = clf.labels.index("happy"), clf.labels.index("sad")
    got = []
    for lab in labels:
        probs = clf.classify(face_tensor(face(lab, rng), clf.size)).probs
        got.append("happy" if probs[hi] > probs[si] else "sad")
    assert np.mean([g == w for g, w in zip(got, labels, strict=True)]) >= 0.8


def test_evaluate_reproduces_the_fit_numbers(tiny_run: Path) -> None:
    data = tiny_run.parent / "data"
    proc = subprocess.run([sys.executable, "-m", "training.cli", "evaluate", "--model",
                           str(tiny_run / "model.tflite"), "--data", str(data), "--json"],
                          capture_output=True, text=True, check=True)
    metrics = json.loads(proc.stdout)
    fitted = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["happy_vs_sad"] == fitted["happy_vs_sad"]
    assert metrics["neutral_leak"] == fitted["neutral_leak"]
    assert metrics["confusion"]["columns"][-1] == "UNCERTAIN"


def test_thresholds_against_a_reference_are_no_worse_on_validation(tiny_run: Path,
                                                                  tmp_path: Path) -> None:
    """Re-exported with --thresholds-against the run itself, the figures `evaluate` measures
    on validation (device path, int8) are at least the reference's, figure by figure."""
    import shutil

    data, again = tiny_run.parent / "data", tmp_path / "again"
    shutil.copytree(tiny_run, again)
    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", "fit", "--data", str(data), "--out", str(again),
         "--labels", "hsno", "--size", "32", "--epochs", "16", "--batch", "32",
         "--crop-scale", "1.0", "--no-augment", "--version", "test-2", "--resume",
         "--export-now", "--thresholds-against", str(tiny_run)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = load_manifest(again / "manifest.json").training["thresholds_against"]
    assert rec["reference"] == "moodcam-fer test-1" and rec["result"]["qualifies"]
    assert "no count figure is worse than moodcam-fer test-1" in (again / "report.md").read_text()
    assert "judged against, moodcam-fer test-1." in (again / "MODEL_CARD.md").read_text()

    def validation(run: Path) -> dict:
        return json.loads(subprocess.run(
            [sys.executable, "-m", "training.cli", "evaluate", "--model", str(run), "--data",
             str(data), "--split", "validation", "--json"],
            capture_output=True, text=True, check=True).stdout)

    # `rule --against` runs the same search read-only: the new thresholds qualify.
    rule = json.loads(subprocess.run(
        [sys.executable, "-m", "training.cli", "rule", "--model", str(again), "--data",
         str(data), "--against", str(tiny_run)], capture_output=True, text=True,
        check=True).stdout)
    assert rule["faces"] == rec["faces"] and rule["result"]["qualifies"]
    ref, new = validation(tiny_run), validation(again)
    for lab in ("happy", "sad"):
        for fig in ("recall", "precision"):
            assert new["counts"][lab][fig] >= ref["counts"][lab][fig], (lab, fig)
    assert new["neutral_leak"]["rate"] <= ref["neutral_leak"]["rate"]


def test_resume_continues_instead_of_restarting(tiny_run: Path) -> None:
    state = json.loads((tiny_run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 16 and len(state["history"]["loss"]) == 16


def test_fit_refuses_to_overwrite_a_run(tiny_run: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "training.cli", "fit", "--data",
                           str(tiny_run.parent / "data"), "--out", str(tiny_run)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_bundle_rejects_a_wrong_key_and_an_unsigned_bundle(tiny_run: Path,
                                                           tmp_path: Path) -> None:
    from device.bundle import BundleError, public_key_hex

    bundle = tiny_run / "moodcam-fer-test-1.moodcam.tar"
    with pytest.raises(BundleError, match="signature"):
        extract_bundle(bundle, tmp_path / "a", public_key=public_key_hex(b"\x01" * 32))
    unsigned = tmp_path / "unsigned.tar"
    subprocess.run([sys.executable, "-m", "training.cli", "export", "--model", str(tiny_run),
                    "--out", str(unsigned)], check=True, capture_output=True)
    with pytest.raises(BundleError, match="unsigned"):
        extract_bundle(unsigned, tmp_path / "b", public_key=public_key_hex(b"\x01" * 32))
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(bundle.read_bytes()[:5000])
    with pytest.raises(BundleError):
        extract_bundle(truncated, tmp_path / "c")


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    import os
    import signal
    import time

    data = write_tree(tmp_path / "data", {"train": {"happy": 30, "sad": 30}}, seed=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.cli", "fit", "--data", str(data), "--out", str(out),
           "--labels", "hs", "--size", "32", "--epochs", "40", "--batch", "8",
           "--crop-scale", "1.0", "--no-augment"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state_path.exists() and json.loads(state_path.read_text())["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = json.loads(state_path.read_text())
    assert 2 <= before["epoch"] < 40
    assert before["wall_s"] > 0  # the time of a stopped run is kept, epoch by epoch
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {out} from epoch {before['epoch']}" in done.stderr
    after = json.loads(state_path.read_text())
    assert after["epoch"] == 40 and len(after["history"]["loss"]) == 40
    assert after["history"]["loss"][: before["epoch"]] == before["history"]["loss"]
