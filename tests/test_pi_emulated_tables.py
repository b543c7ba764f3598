"""The tables `deploy/pi-emulated.sh --bench` and `MOODCAM_PI_BENCH_MODEL=DIR` print, read
from real `moodcam bench --json` output. The qemu runs themselves take tens of minutes and
are not in CI; this keeps the host side that turns their output into ratios from drifting
away from the bench's JSON."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _pi_emulated() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pi_emulated", ROOT / "deploy" / "pi_emulated.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(frames: Path, *args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "device.cli", "bench", "--json", "--frames", "12",
                        "--paced-s", "0.5", "--runtime", "ai-edge-litert", "--frame-dir",
                        str(frames), *args], capture_output=True, text=True, check=False,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines()[2:] if line.startswith("|")]


def test_bench_and_model_tables_read_the_bench_json(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from device.bench import make_frames

    (tmp_path / "frames").mkdir()
    make_frames(tmp_path / "frames", scenes=1, per_scene=12)
    pe = _pi_emulated()

    # --bench: old, ort and new on one machine; the same file stands in for the other.
    out = tmp_path / "bench.json"
    out.write_text(_bench(tmp_path / "frames", "--profile", "old,ort,new"))
    assert pe.bench(out, out) == 0
    rows = _rows(capsys.readouterr().out)
    by = json.loads(out.read_text())["runtimes"]["ai-edge-litert"]
    assert [r[:2] for r in rows] == [["x86", "ai-edge-litert"],
                                     ["aarch64 (qemu)", "ai-edge-litert"]]
    assert rows[0][4] == f"{by['new']['fps'] / by['old']['fps']:.2f}x"
    assert rows[0][5].endswith(
        f"({by['old']['stage_ms']['detect'] / by['ort']['stage_ms']['detect']:.2f}x)")

    # MOODCAM_PI_BENCH_MODEL: the shipped model against another, a face's invokes each;
    # the other is the shipped one with the mirror view too, so its face costs ~2x.
    other = tmp_path / "model2"
    shutil.copytree(ROOT / "models", other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "flip_average": True}))
    (tmp_path / "x86").mkdir()
    for m, model in (("shipped", ROOT / "models"), ("model2", other)):
        (tmp_path / "x86" / f"model-{m}.json").write_text(
            _bench(tmp_path / "frames", "--profile", "new", "--model-dir", str(model)))
    shutil.copytree(tmp_path / "x86", tmp_path / "pi")  # the same files stand in for the Pi's
    assert pe.models(tmp_path / "x86", tmp_path / "pi") == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[:2] for r in rows] == [["x86", "shipped"], ["x86", "model2"],
                                     ["aarch64 (qemu)", "shipped"], ["aarch64 (qemu)", "model2"]]
    face = {}
    for m in ("shipped", "model2"):
        r = json.loads((tmp_path / "pi" / f"model-{m}.json").read_text())
        new = r["runtimes"]["ai-edge-litert"]["new"]
        face[m] = new["invoke_ms_median"] * new["views_per_face"]
    assert rows[2][5] == f"{face['shipped'] / face['model2']:.2f}x" and rows[3][5] == ""
    assert [r[3] for r in rows] == ["1", "2", "1", "2"]
