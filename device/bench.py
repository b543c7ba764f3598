"""`moodcam bench`: per-stage timings on one core, for each installed runtime.

Frames are 640x480 JPEGs holding 1-3 real faces (scikit-image's astronaut at several
sizes, mirrored or not), so "capture decode" is the MJPEG decode a USB camera costs.
Each runtime runs in its own child process pinned to one CPU, so its peak RSS is its
own and the runtimes cannot disturb each other. The first frames warm up and are not
counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.assemble import StartupError
from device.runtime import RUNTIMES, available_runtimes

WARMUP = 10
DISTINCT = 30
WINDOW_S = 5.0
FPS = 10.0


def make_frames(out: Path, n: int = DISTINCT) -> list[Path]:
    from device.capture.sample import _FACE, _PATCH, _paste, astronaut_bgr

    img = astronaut_bgr()
    x, y, w, h = _PATCH
    patch = img[y:y + h, x:x + w]
    rng = np.random.default_rng(7)
    paths = []
    for k in range(n):
        canvas = np.empty((480, 640, 3), np.uint8)
        canvas[:] = np.linspace(60, 160, 480, dtype=np.uint8)[:, None, None]
        faces = 1 + k % 3
        slot_w = 640 // faces
        for j in range(faces):
            face_w = int(rng.integers(60, min(140, slot_w // 2) + 1))
            k_scale = face_w / _FACE[2]
            p = patch[:, ::-1] if rng.random() < 0.5 else patch
            scaled = cv2.resize(p, (round(w * k_scale), round(h * k_scale)),
                                interpolation=cv2.INTER_AREA)
            x0 = j * slot_w + int(rng.integers(0, max(1, slot_w - scaled.shape[1])))
            y0 = int(rng.integers(0, max(1, 480 - scaled.shape[0])))
            _paste(canvas, scaled, x0, y0)
        path = out / f"frame{k:03d}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def child(runtime: str, frames: int, frame_dir: Path, model_dir: Path | None) -> dict[str, Any]:
    """One runtime, one core: returns the measurements as a dict."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    from device.assemble import load_classifier, load_detector
    from device.config import parse_config
    from device.pipeline import Pipeline, StageTimes
    from device.spool import Spool

    cfg = parse_config({"device_id": "bench", "model": {"runtime": runtime, "threads": 1}})
    classifier = load_classifier(cfg, model_dir)
    detector = load_detector(cfg)
    blobs = [np.fromfile(p, np.uint8) for p in sorted(frame_dir.glob("*.jpg"))]
    with tempfile.TemporaryDirectory() as tmp, Spool(Path(tmp) / "spool.sqlite") as spool:
        pipe = Pipeline.build(detector, classifier, "bench", WINDOW_S, sink=spool.put,
                              stream=spool.stream, seq=spool.allocate)
        faces = 0
        for i in range(WARMUP + frames):
            if i == WARMUP:
                pipe.times = StageTimes()
                faces = 0
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            image = cv2.imdecode(blobs[i % len(blobs)], cv2.IMREAD_COLOR)
            assert image is not None
            pipe.times.add("capture", time.perf_counter() - t0)
            faces += len(pipe.process(image, i / FPS))
        wall = time.perf_counter() - t_start
        windows = pipe.times.calls["publish"]
    ms = pipe.times.per_frame_ms()
    invoke_ms = _invoke_median_ms(classifier)
    core = ms["detect"] + ms["classify"]
    loop_ms = wall * 1000 / frames
    plumbing = loop_ms - ms["capture"] - core
    return {
        "runtime": classifier.runtime,
        "detector": detector.name,
        "frames": frames,
        "faces_per_frame": round(faces / frames, 2),
        "stage_ms": ms,
        "publish_ms_per_window": round(pipe.times.total["publish"] * 1000 / max(windows, 1), 3),
        "loop_ms": round(loop_ms, 3),
        "fps": round(frames / wall, 2),
        "detect_classify_ms": round(core, 3),
        "plumbing_ms": round(plumbing, 3),
        "plumbing_pct": round(100 * plumbing / core, 1) if core else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "invoke_ms_median": invoke_ms,
        "views_per_face": classifier.views_per_face,
    }


def _invoke_median_ms(classifier: Any, n: int = 1000) -> float:
    """One model invoke() alone (the training issue's per-invoke budget), median of n."""
    x = classifier.quantize_input(np.full((classifier.size, classifier.size, 1), 0.5,
                                          np.float32))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        classifier.interpreter.invoke(x)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 3)


def _table(results: dict[str, Any]) -> str:
    lines = [f"{results['frames']} frames 640x480 (1-3 faces), one core, after {WARMUP} "
             "warm-up frames"]
    for name, r in results["runtimes"].items():
        if "error" in r:
            lines.append(f"{name}: {r['error']}")
            continue
        st = ", ".join(f"{k} {v:.2f}" for k, v in r["stage_ms"].items())
        lines.append(f"{name}: {r['fps']:.1f} fps end to end, {r['faces_per_frame']} faces/frame")
        lines.append(f"  ms/frame: {st}")
        lines.append(f"  detect+classify {r['detect_classify_ms']:.2f} ms, everything else "
                     f"except decode {r['plumbing_ms']:.2f} ms ({r['plumbing_pct']}%), peak "
                     f"RSS {r['peak_rss_mb']} MB")
        lines.append(f"  model invoke() median {r['invoke_ms_median']:.3f} ms; "
                     f"{r['views_per_face']} invokes per face (views)")
    for name in results["missing"]:
        lines.append(f"{name}: not installed")
    return "\n".join(lines)


def run_bench(frames: int, as_json: bool, runtime: str | None,
              model_dir: Path | None) -> int:
    if frames < 1:
        raise StartupError("--frames must be at least 1")
    wanted = [runtime] if runtime else list(RUNTIMES)
    installed = available_runtimes()
    missing = [r for r in wanted if r not in installed]
    if runtime and missing:
        raise StartupError(f"runtime {runtime} is not installed")
    results: dict[str, Any] = {"frames": frames, "warmup": WARMUP, "runtimes": {},
                               "missing": missing}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            make_frames(Path(tmp))
        except Exception as e:  # CaptureError when scikit-image is missing
            raise StartupError(f"bench: cannot build frames: {e}") from None
        for r in (r for r in wanted if r in installed):
            cmd = [sys.executable, "-m", "device.bench", "--runtime", r, "--frames",
                   str(frames), "--dir", tmp]
            if model_dir:
                cmd += ["--model-dir", str(model_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                results["runtimes"][r] = {"error": err}
                continue
            results["runtimes"][r] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(results) if as_json else _table(results))
    return 0 if results["runtimes"] and all(
        "error" not in v for v in results["runtimes"].values()) else 1


def _main() -> int:
    ap = argparse.ArgumentParser(description="moodcam bench child (one runtime)")
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--model-dir")
    a = ap.parse_args()
    try:
        out = child(a.runtime, a.frames, Path(a.dir), Path(a.model_dir) if a.model_dir else None)
    except StartupError as e:
        print(f"moodcam bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
