"""The `moodcam` command contracts, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from device.payloads import validate_mood
from tests.test_detect import mosaic

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def moodcam(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "device.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env, check=False)


def one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("moodcam")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> dict[str, str]:
    d = tmp_path_factory.mktemp("img")
    paths = {"astronaut": d / "astronaut.png", "blank": d / "blank.png",
             "crowd": d / "crowd.png"}
    cv2.imwrite(str(paths["astronaut"]), astronaut_bgr)
    cv2.imwrite(str(paths["blank"]), np.full((480, 640, 3), 90, np.uint8))
    cv2.imwrite(str(paths["crowd"]), mosaic(astronaut_bgr))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> Path:
    """6 s at 10 fps: the astronaut's head drifting across a 640x480 frame."""
    path = tmp_path_factory.mktemp("video") / "walk.avi"
    head = cv2.resize(astronaut_bgr[10:250, 120:330], (126, 144))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (640, 480))
    for i in range(60):
        frame = np.full((480, 640, 3), 100, np.uint8)
        x = 40 + i * 6
        frame[160:304, x:x + 126] = head
        vw.write(frame)
    vw.release()
    return path


def test_classify_json_contract(images: dict[str, str], model_dir: Path) -> None:
    labels = json.loads((model_dir / "manifest.json").read_text())["labels"]
    p = moodcam("classify", "--json", "--model-dir", str(model_dir), images["astronaut"],
                images["blank"], images["crowd"])
    assert p.returncode == 0, p.stderr
    out = jsonl(p.stdout)
    assert [o["image"] for o in out] == [images["astronaut"], images["blank"], images["crowd"]]
    (face,) = out[0]["faces"]
    assert set(face) == {"box", "label", "confidence"}
    assert face["label"] in [*labels, "unknown"]
    assert 0 <= face["confidence"] <= 1
    x, y, w, _ = face["box"]
    assert abs(x - 178) < 20 and abs(y - 63) < 20 and 60 < w < 130
    assert out[1]["faces"] == []
    assert len(out[2]["faces"]) == 30


def test_classify_unreadable_image_is_one_line_and_nonzero(
        images: dict[str, str], model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    p = moodcam("classify", "--model-dir", str(model_dir), str(bad), images["astronaut"])
    assert p.returncode == 1
    assert str(bad) in one_error_line(p)
    assert "1 face(s)" in p.stdout  # the good image is still classified


def test_bad_model_dirs_fail_with_one_line(images: dict[str, str], model_dir: Path,
                                           tmp_path: Path) -> None:
    p = moodcam("classify", "--model-dir", str(tmp_path / "nothing"), images["astronaut"])
    assert p.returncode == 1 and "manifest not found" in one_error_line(p)
    broken = tmp_path / "truncated"
    broken.mkdir()
    (broken / "manifest.json").write_text((model_dir / "manifest.json").read_text())
    name = json.loads((model_dir / "manifest.json").read_text())["model_file"]
    (broken / name).write_bytes((model_dir / name).read_bytes()[:1000])
    p = moodcam("replay", "sample", "--model-dir", str(broken))
    assert p.returncode == 1 and "truncated" in one_error_line(p)
    (broken / "manifest.json").write_text("{not json")
    p = moodcam("classify", "--model-dir", str(broken), images["astronaut"])
    assert p.returncode == 1 and "not readable JSON" in one_error_line(p)


def test_replay_video_prints_deterministic_windows(video: Path, model_dir: Path) -> None:
    args = ("replay", str(video), "--window", "5", "--json", "--model-dir", str(model_dir),
            "--device-id", "shop-12")
    p = moodcam(*args)
    assert p.returncode == 0, p.stderr
    out = jsonl(p.stdout)
    # Never spooled: the replay stream (zeros) and numbers from 1, so a rerun is identical.
    assert [w["window_id"] for w in out] == ["shop-12/0000000000000000/1",
                                             "shop-12/0000000000000000/2"]
    assert [w["start"] for w in out] == ["1970-01-01T00:00:00Z", "1970-01-01T00:00:05Z"]
    for i, w in enumerate(out, 1):
        assert w["seq"] == i
        validate_mood(w)
    assert [w["frames"] for w in out] == [50, 10]
    assert out[1]["end"] == "1970-01-01T00:00:06Z"
    # One person in view the whole time: one viewer (ending in the last window), one
    # detection per frame.
    assert sum(w["viewers_total"] for w in out) == 1 and out[1]["viewers_total"] == 1
    assert out[1]["dwell_s"]["max"] == pytest.approx(5.9)
    assert [w["detections_total"] for w in out] == [50, 10]
    again = moodcam(*args)
    assert again.stdout == p.stdout


def test_replay_folder_with_start_time(images: dict[str, str], model_dir: Path) -> None:
    folder = str(Path(images["astronaut"]).parent)
    p = moodcam("replay", folder, "--fps", "2", "--window", "10", "--json", "--start",
                "2026-11-24T07:00:00Z", "--content-id", "promo-42", "--model-dir",
                str(model_dir))
    assert p.returncode == 0, p.stderr
    (w,) = jsonl(p.stdout)
    assert w["window_id"].endswith("/0000000000000000/1")
    assert w["start"] == "2026-11-24T07:00:00Z"
    assert w["frames"] == 3 and w["detections_total"] == 31 and w["content_id"] == "promo-42"
    assert w["end"] == "2026-11-24T07:00:01.500Z"


def test_replay_missing_source(model_dir: Path, tmp_path: Path) -> None:
    p = moodcam("replay", str(tmp_path / "nope.mp4"), "--model-dir", str(model_dir))
    assert p.returncode == 1 and "no such file" in one_error_line(p)


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('device_id = "shop-12"\n[camera]\nsource = "sample"\n')
    p = moodcam("check-config", str(good))
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('device_id = "shop+12"\n[camera]\nsorce = "sample"\n[mqtt]\nport = 0\n')
    p = moodcam("check-config", str(bad))
    assert p.returncode == 2
    errors = p.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in p.stderr
    assert any(e.startswith("camera.sorce") for e in errors)
    assert any(e.startswith("mqtt.port") for e in errors)
    assert any(e.startswith("device_id") for e in errors)
    p = moodcam("check-config", str(tmp_path / "missing.toml"))
    assert p.returncode == 2


@pytest.mark.parametrize("raw", [
    b'device_id = "shop-12"\n[camera]\nsource = "\xff"\n',
    b'device_id = "a"\nx = ' + b"[" * 5000 + b"]" * 5000 + b"\n",
    b'device_id = "' + b"x" * 10_000_000 + b'"\n',
    b'device_id = "' + b"x" * 100_000 + b'"\n',
], ids=["non-utf8", "nested", "10MB", "100KB-value"])
def test_check_config_hostile_files_exit_2_one_line(raw: bytes, tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_bytes(raw)
    p = moodcam("check-config", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert len(line) < 300 + len(str(f)), line


def test_run_with_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('device_id = "x"\nbogus = 1\n')
    p = moodcam("run", "--config", str(bad))
    assert p.returncode == 2 and "bogus" in one_error_line(p)


def test_version_and_reserved_model_group() -> None:
    p = moodcam("version")
    assert p.returncode == 0 and p.stdout.startswith("moodcam ")
    assert "onnxruntime 1." in p.stdout  # YuNet's default backend is installed
    assert moodcam("model").returncode == 2
    assert moodcam("no-such-command").returncode == 2


@pytest.mark.slow
def test_bench_json(model_dir: Path) -> None:
    """A smoke test, not a timing: old and new defaults run side by side per runtime."""
    p = moodcam("bench", "--json", "--frames", "60", "--paced-s", "1", "--model-dir",
                str(model_dir))
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["frames"] == 60 and r["paced_frames"] == 10 and r["runtimes"]
    m = json.loads((model_dir / "manifest.json").read_text())
    views = len(m["zoom_views"]) * (2 if m["flip_average"] else 1)
    for by_profile in r["runtimes"].values():
        assert set(by_profile) == {"old", "new"}
        for res in by_profile.values():
            assert set(res["stage_ms"]) == {"capture", "detect", "crop", "classify",
                                            "track", "aggregate", "publish"}
            assert res["fps"] > 0 and res["peak_rss_mb"] > 10
            assert 0 < res["cpu_share_10fps"] <= 1.5 and res["cpu_ms_per_frame"] > 0
            assert 0 < res["cpu_share_10fps_raw"] <= 1.5
            assert 1 <= res["faces_per_frame"] <= 3
            assert res["invoke_ms_median"] > 0 and res["views_per_face"] == views
        old, new = by_profile["old"], by_profile["new"]
        # Every face of every frame, each view of it, against detection on every 5th frame
        # and classification per track.
        assert old["detect_share"] == 1.0 and new["detect_share"] < 0.5
        assert old["invokes_per_frame"] == pytest.approx(views * old["faces_per_frame"],
                                                         abs=0.05)
        assert new["invokes_per_frame"] < old["invokes_per_frame"] / 2


@pytest.mark.slow
def test_bench_on_given_frames_runs_a_lever_that_was_not_kept(tmp_path: Path) -> None:
    """--frame-dir (the emulated Pi's bench: frames drawn on the host) with the "recheck"
    profile: detection on a shrunk frame, weak faces rechecked at full resolution."""
    from device.bench import make_frames

    make_frames(tmp_path, scenes=1, per_scene=12)
    p = moodcam("bench", "--json", "--frames", "12", "--paced-s", "0.5", "--profile",
                "recheck", "--runtime", "ai-edge-litert", "--frame-dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (res,) = json.loads(p.stdout)["runtimes"].values()
    assert res["recheck"]["detect_share"] == 1.0 and res["recheck"]["faces_per_frame"] >= 1
    assert res["recheck"]["rechecks_per_frame"] >= 0
    empty = tmp_path / "empty"
    empty.mkdir()
    p = moodcam("bench", "--frame-dir", str(empty))
    assert p.returncode != 0 and "no *.jpg frames in" in one_error_line(p)


def test_bench_rejects_an_unknown_profile() -> None:
    p = moodcam("bench", "--profile", "old,fastest")
    assert p.returncode != 0 and "unknown profile fastest" in one_error_line(p)
