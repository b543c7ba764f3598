"""Camera-path evaluation: FER faces in camera-sized frames, through the device's detector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from device.payloads import validate_mood
from training.camera_eval import (
    camera_faces,
    camera_frame,
    device_detector,
    evaluate_camera_path,
    format_camera,
)
from training.data import load_splits


def test_camera_frame_is_a_640x480_frame_holding_the_face() -> None:
    face = np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8)
    frame = camera_frame(face, np.random.default_rng(1))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8


def test_shipped_model_through_the_camera_path(model_dir: Path, fer_zip: Path,
                                               yunet_path: Path) -> None:
    m = evaluate_camera_path(model_dir, fer_zip, yunet_path, [1.0, 1.6], limit=60, seed=3)
    assert m["detection_rate"] > 0.8
    tight, loose = m["by_crop_scale"]["1"], m["by_crop_scale"]["1.6"]
    # FER framing (measured crop_scale ~1.0) beats a loose crop on the same detections.
    assert tight["accuracy_argmax"] > loose["accuracy_argmax"]


def test_frame_seeds_pool_each_seeds_faces(model_dir: Path, fer_zip: Path,
                                           yunet_path: Path) -> None:
    """--frame-seeds: the faces found in every seed's frames are pooled, each seed is also
    scored alone, and one seed alone is the plain one-frame evaluation."""
    one = evaluate_camera_path(model_dir, fer_zip, yunet_path, limit=80, seed=5)
    pooled = evaluate_camera_path(model_dir, fer_zip, yunet_path, limit=80, seed=5,
                                  frame_seeds=[5, 6])
    assert pooled["frame_seeds"] == [5, 6] and pooled["images"] == 160
    per = pooled["by_frame_seed"]
    assert per["5"]["detected"] == one["detected"]
    [(scale, alone)] = one["by_crop_scale"].items()  # the manifest's crop scale
    assert per["5"]["neutral_leak"] == alone["neutral_leak"]
    assert pooled["detected"] == per["5"]["detected"] + per["6"]["detected"]
    # Seed 6 draws other frames (sizes, places, light), so its figures are its own...
    assert per["6"]["happy_vs_sad"] != per["5"]["happy_vs_sad"]
    # ...and the pooled figures weigh each seed's faces.
    hvs = pooled["by_crop_scale"][scale]["happy_vs_sad"]
    assert hvs["n"] == per["5"]["happy_vs_sad"]["n"] + per["6"]["happy_vs_sad"]["n"]
    right = sum(r["happy_vs_sad"]["accuracy"] * r["happy_vs_sad"]["n"] for r in per.values())
    assert abs(hvs["accuracy"] - right / hvs["n"]) < 1e-9
    text = format_camera(pooled)
    assert "pooled over frame seeds 5, 6" in text and "seed 6: happy-vs-sad" in text


def test_camera_faces_yields_each_seed_in_turn(fer_zip: Path, yunet_path: Path) -> None:
    splits, _ = load_splits(fer_zip, drop_twins=False)
    images = splits["test"].images[:12]
    idx = np.arange(len(images))
    det = device_detector(yunet_path)
    first = [(i, box) for i, _, box, _ in camera_faces(det, images, idx, (0,))]
    both = [(i, box) for i, _, box, _ in camera_faces(det, images, idx, (0, 1))]
    assert both[:len(first)] == first and len(both) > len(first)
    assert both[len(first):] != first  # seed 1's frames place the faces elsewhere


def test_replay_of_a_demo_video_counts_one_viewer_per_face(
        model_dir: Path, fer_zip: Path, yunet_path: Path, tmp_path: Path) -> None:
    """`moodcam replay` on a video of four FER test faces, one per 10 s segment (YuNet
    from ../shared, as the device finds it in a checkout)."""
    video = tmp_path / "demo.avi"
    made = subprocess.run(
        [sys.executable, "-m", "training.cli", "demo-video", "--data", str(fer_zip),
         "--out", str(video), "--emotions", "happy,sad,neutral,happy"],
        capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert f"{video}: 400 frames" in made.stdout
    def replay(*config: str) -> list[dict[str, Any]]:
        run = subprocess.run(
            [sys.executable, "-m", "device.cli", "replay", str(video), "--window", "10",
             "--json", "--model-dir", str(model_dir), *config],
            capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        return [json.loads(line) for line in run.stdout.splitlines()]

    windows = replay()  # the config defaults
    assert len(windows) == 4
    labels = json.loads((model_dir / "manifest.json").read_text())["labels"]
    for w in windows:
        validate_mood(w)
        # One person per segment however many frames showed them.
        assert w["viewers_total"] == 1 and w["frames"] == 100
        assert w["detections_total"] >= 70
        assert set(w["viewers"]) == {*labels, "unknown"}
    # The same moods as detecting and classifying every face of every frame (the
    # defaults before the work-saving schedule).
    old = tmp_path / "old.toml"
    old.write_text('device_id = "demo"\n[detector]\ninput_width = 0\nevery_n_frames = 1\n'
                   '[tracker]\nclassify_every = 1\n')
    every_frame = replay("--config", str(old))
    assert [w["viewers"] for w in windows] == [w["viewers"] for w in every_frame]
    for new_w, old_w in zip(windows, every_frame, strict=True):
        assert abs(new_w["detections_total"] - old_w["detections_total"]) <= 5
