"""`moodcam bench`: per-stage timings and CPU share, old defaults beside new, per runtime.

Frames are 640x480 JPEGs like a camera's view: scenes of 4 s at 10 fps, each with 1-3
real faces (scikit-image's astronaut at several sizes, mirrored or not) drifting slowly,
and a cut between scenes; "capture decode" is the MJPEG decode a USB camera costs.
Each (runtime, profile) runs in its own child process pinned to `--threads` CPUs (one by
default), so its peak RSS is its own and the runs cannot disturb each other. The first
frames warm up and are not counted. Two figures per run:

- end-to-end fps: frames as fast as they come;
- CPU share at 10 fps: CPU seconds per wall second while a fresh pipeline gets the
  same frames at the camera's 10 fps, i.e. what a Pi pays to keep up with its camera:
  once as JPEGs decoded a frame at a time (a USB camera's MJPEG), once as raw arrays
  copied a frame at a time (a Pi camera through picamera2 decodes nothing).

Profiles: "new" is the config defaults, "old" the defaults before the work-saving
schedule (detection on the full frame, every frame; every face classified every frame),
and "shrink" (detection on frames shrunk to 320 px wide: it fails the camera-path
evaluation, so it is not a default), "skip", "per-track", "ort" (YuNet on onnxruntime)
each add one lever to "old";
"recheck" is "shrink" with weak faces rechecked at full resolution, "every6" the new
defaults detecting every 6th frame (neither kept: README, Benchmark).

`--frame-dir` takes the frames from a directory of JPEGs instead (the emulated Pi has no
scikit-image to draw them: deploy/pi-emulated.sh --bench makes them on the host).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
SCENE_FRAMES = 40
SCENES = 3
WINDOW_S = 5.0
FPS = 10.0
# The defaults before issue 12: full frame, every frame, OpenCV's DNN module.
OLD_DET: dict[str, Any] = {"input_width": 0, "every_n_frames": 1, "backend": "opencv"}
OLD = {"detector": OLD_DET, "tracker": {"classify_every": 1}}
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "old": OLD,
    "shrink": {**OLD, "detector": {**OLD_DET, "input_width": 320}},
    "skip": {**OLD, "detector": {**OLD_DET, "every_n_frames": 5}},
    "per-track": {"detector": OLD_DET},
    "ort": {**OLD, "detector": {**OLD_DET, "backend": "onnxruntime"}},
    "new": {},
    # Levers measured and not kept (README, Benchmark): the shrunk pass with its weak faces
    # rechecked at full resolution, and detection every 6th frame instead of every 5th.
    "recheck": {**OLD, "detector": {**OLD_DET, "input_width": 320, "recheck_score": 0.1}},
    "every6": {"detector": {"every_n_frames": 6}},
}


def make_frames(out: Path, scenes: int = SCENES, per_scene: int = SCENE_FRAMES) -> list[Path]:
    from device.capture.sample import _FACE, _PATCH, _paste, astronaut_bgr

    img = astronaut_bgr()
    x, y, w, h = _PATCH
    patch = img[y:y + h, x:x + w]
    rng = np.random.default_rng(7)
    paths = []
    for s in range(scenes):
        faces = 1 + s % 3
        slot_w = 640 // faces
        people = []
        for j in range(faces):
            face_w = int(rng.integers(60, min(140, slot_w // 2) + 1))
            k_scale = face_w / _FACE[2]
            p = patch[:, ::-1] if rng.random() < 0.5 else patch
            scaled = cv2.resize(p, (round(w * k_scale), round(h * k_scale)),
                                interpolation=cv2.INTER_AREA)
            x0 = j * slot_w + int(rng.integers(0, max(1, slot_w - scaled.shape[1])))
            y0 = int(rng.integers(0, max(1, 480 - scaled.shape[0])))
            vx, vy = rng.uniform(-2, 2), rng.uniform(-1, 1)  # px per frame: a slow sway
            people.append((scaled, x0, y0, vx, vy))
        for i in range(per_scene):
            canvas = np.empty((480, 640, 3), np.uint8)
            canvas[:] = np.linspace(60, 160, 480, dtype=np.uint8)[:, None, None]
            for scaled, x0, y0, vx, vy in people:
                _paste(canvas, scaled, round(x0 + vx * i), round(y0 + vy * i))
            path = out / f"frame{s * per_scene + i:04d}.jpg"
            cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(path)
    return paths


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Frames:
    """The bench's frames, fed to a pipeline with the capture stage timed."""

    def __init__(self, frame_dir: Path) -> None:
        self.blobs = [np.fromfile(p, np.uint8) for p in sorted(frame_dir.glob("*.jpg"))]
        # A Pi camera (picamera2) hands over raw arrays: no decode, one fresh buffer a
        # frame. Decoded only for the raw run, so the JPEG runs' peak RSS does not hold them.
        self.decoded: list[np.ndarray] = []

    def jpeg(self, i: int, pipe: Any) -> np.ndarray:
        t0 = time.perf_counter()
        image = cv2.imdecode(self.blobs[i % len(self.blobs)], cv2.IMREAD_COLOR)
        assert image is not None
        pipe.times.add("capture", time.perf_counter() - t0)
        return image

    def raw(self, i: int, pipe: Any) -> np.ndarray:
        if not self.decoded:
            self.decoded = [d for b in self.blobs
                            if (d := cv2.imdecode(b, cv2.IMREAD_COLOR)) is not None]
        t0 = time.perf_counter()
        image = self.decoded[i % len(self.decoded)].copy()
        pipe.times.add("capture", time.perf_counter() - t0)
        return image


def _flat_out(pipe: Any, frames: _Frames, n: int) -> tuple[int, float, float, Any]:
    """n frames as fast as they come, after WARMUP: (faces, wall s, CPU s, stage times)."""
    from device.pipeline import StageTimes

    faces = 0
    t_start = cpu_start = 0.0
    for i in range(WARMUP + n):
        if i == WARMUP:
            pipe.times = StageTimes()
            faces = 0
            t_start, cpu_start = time.perf_counter(), _cpu_s()
        faces += len(pipe.process(frames.jpeg(i, pipe), i / FPS))
    return faces, time.perf_counter() - t_start, _cpu_s() - cpu_start, pipe.times


def child(runtime: str, profile: str, frames: int, paced_frames: int, threads: int,
          frame_dir: Path, model_dir: Path | None) -> dict[str, Any]:
    """One runtime and profile on `threads` cores: returns the measurements as a dict."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    from device.assemble import load_classifier, load_detector, make_schedule, make_tracker
    from device.config import parse_config
    from device.pipeline import Pipeline
    from device.spool import Spool

    over = PROFILES[profile]
    cfg = parse_config({"device_id": "bench",
                        "model": {"runtime": runtime, "threads": threads},
                        "detector": {**over.get("detector", {}), "threads": threads},
                        "tracker": over.get("tracker", {})})
    classifier = load_classifier(cfg, model_dir)
    detector = load_detector(cfg)  # sets OpenCV's threads
    feed = _Frames(frame_dir)
    windows: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory() as tmp, Spool(Path(tmp) / "spool.sqlite") as spool:
        def build(sink: Any) -> Pipeline:
            return Pipeline.build(detector, classifier, "bench", WINDOW_S, sink=sink,
                                  tracker=make_tracker(cfg), schedule=make_schedule(cfg),
                                  stream=spool.stream, seq=spool.allocate)

        def sink(p: dict[str, Any]) -> None:
            windows.append(p)
            spool.put(p)

        pipe = build(sink)
        faces, wall, cpu, times = _flat_out(pipe, feed, frames)
        pipe.close((WARMUP + frames) / FPS)
        cpu_share = _paced_share(build(spool.put), feed.jpeg, paced_frames)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        raw_share = _paced_share(build(spool.put), feed.raw, paced_frames)
        paced = 2 * (WARMUP + paced_frames)
    publish_calls = max(times.calls["publish"], 1)
    ms = times.per_frame_ms()
    invoke_ms = _invoke_median_ms(classifier)
    core = ms["detect"] + ms["classify"]
    loop_ms = wall * 1000 / frames
    plumbing = loop_ms - ms["capture"] - core
    views = classifier.views_per_face
    return {
        "runtime": classifier.runtime,
        "profile": profile,
        "detector": detector.name,
        "detector_backend": getattr(detector, "backend", None),
        "threads": threads,
        "frames": frames,
        "faces_per_frame": round(faces / frames, 2),
        "stage_ms": ms,
        "publish_ms_per_window": round(times.total["publish"] * 1000 / publish_calls, 3),
        "loop_ms": round(loop_ms, 3),
        "fps": round(frames / wall, 2),
        "cpu_ms_per_frame": round(cpu * 1000 / frames, 3),
        "cpu_share_10fps": round(cpu_share, 4),
        "cpu_share_10fps_raw": round(raw_share, 4),
        "detect_share": round(times.detected / frames, 3),
        "invokes_per_frame": round(times.classified * views / frames, 3),
        "rechecks_per_frame": round(detector.rechecks / (WARMUP + frames + paced), 3),
        "detect_classify_ms": round(core, 3),
        "plumbing_ms": round(plumbing, 3),
        "plumbing_pct": round(100 * plumbing / core, 1) if core else None,
        "peak_rss_mb": round(peak_rss_mb, 1),  # the pipeline's, JPEG frames
        "invoke_ms_median": invoke_ms,
        "views_per_face": views,
        "counts": _counts(windows),
    }


def _paced_share(pipe: Any, frame: Any, n: int) -> float:
    """CPU seconds per wall second over n frames fed at FPS (after WARMUP frames)."""
    period = 1.0 / FPS
    for i in range(WARMUP):
        pipe.process(frame(i, pipe), i * period)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    for i in range(n):
        pipe.process(frame(WARMUP + i, pipe), (WARMUP + i) * period)
        delay = t0 + (i + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return (_cpu_s() - cpu0) / (time.perf_counter() - t0)


def _counts(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the windows of the timed run counted: viewers and detections per label."""
    viewers: dict[str, int] = {}
    dets: dict[str, int] = {}
    for w in windows:
        for k, v in w["viewers"].items():
            viewers[k] = viewers.get(k, 0) + v
        for k, v in w["detections"].items():
            dets[k] = dets.get(k, 0) + v
    return {"viewers": viewers, "detections": dets, "frames": sum(w["frames"] for w in windows)}


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


def _counts_text(c: dict[str, Any]) -> str:
    v = " ".join(f"{k} {n}" for k, n in c["viewers"].items() if n)
    d = " ".join(f"{k} {n}" for k, n in c["detections"].items() if n)
    return f"viewers {v or 'none'}; detections {d or 'none'}"


def _table(results: dict[str, Any]) -> str:
    lines = [f"{results['frames']} frames 640x480 (scenes of 1-3 faces), "
             f"{results['threads']} core(s), after {WARMUP} warm-up frames; CPU share over "
             f"{results['paced_frames']} frames at {FPS:g} fps; median of "
             f"{results['repeat']} run(s)"]
    for name, by_profile in results["runtimes"].items():
        lines.append(f"{name}:")
        for prof, r in by_profile.items():
            if "error" in r:
                lines.append(f"  {prof}: {r['error']}")
                continue
            st = ", ".join(f"{k} {v:.2f}" for k, v in r["stage_ms"].items())
            lines.append(f"  {prof}: {r['fps']:.1f} fps end to end ({r['cpu_ms_per_frame']:.2f} "
                         f"CPU ms/frame), {r['cpu_share_10fps']:.1%} "
                         f"of a core at {FPS:g} fps ({r['cpu_share_10fps_raw']:.1%} on raw "
                         f"frames), {r['invokes_per_frame']:.2f} invokes/frame, "
                         f"detector on {r['detect_share']:.0%} of frames"
                         + (f" ({r['rechecks_per_frame']:.2f} regions rechecked/frame)"
                            if r.get("rechecks_per_frame") else "") + ", "
                         f"{r['faces_per_frame']} faces/frame")
            lines.append(f"    ms/frame: {st}; plumbing {r['plumbing_ms']:.2f} ms "
                         f"({r['plumbing_pct']}%), peak RSS {r['peak_rss_mb']} MB, invoke() "
                         f"median {r['invoke_ms_median']:.3f} ms, {r['views_per_face']} "
                         "invokes per classified face")
            lines.append(f"    counted: {_counts_text(r['counts'])}")
        old, new = by_profile.get("old"), by_profile.get("new")
        if old and new and "error" not in old and "error" not in new:
            raw = new["cpu_share_10fps_raw"] / old["cpu_share_10fps_raw"]
            lines.append(f"  new vs old: {new['fps'] / old['fps']:.2f}x fps ("
                         f"{old['cpu_ms_per_frame'] / new['cpu_ms_per_frame']:.2f}x by CPU time), "
                         f"{new['cpu_share_10fps'] / old['cpu_share_10fps']:.2f}x CPU share "
                         f"at {FPS:g} fps ({raw:.2f}x on raw frames)")
    for name in results["missing"]:
        lines.append(f"{name}: not installed")
    return "\n".join(lines)


def _run_child(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median fps, its CPU share the median of all runs'."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["fps"])
    mid = dict(ok[(len(ok) - 1) // 2])
    for k in ("cpu_share_10fps", "cpu_share_10fps_raw"):
        mid[k] = round(statistics.median(r[k] for r in ok), 4)
    mid["cpu_ms_per_frame"] = round(statistics.median(r["cpu_ms_per_frame"] for r in ok), 3)
    mid["runs"] = [{k: r[k] for k in ("fps", "cpu_ms_per_frame", "cpu_share_10fps",
                                      "cpu_share_10fps_raw")} for r in ok]
    return mid


def run_bench(frames: int, as_json: bool, runtime: str | None, model_dir: Path | None,
              profiles: list[str] | None = None, repeat: int = 1, threads: int = 1,
              paced_s: float = 10.0, frame_dir: Path | None = None) -> int:
    if frames < 1:
        raise StartupError("--frames must be at least 1")
    if repeat < 1 or threads < 1 or paced_s <= 0:
        raise StartupError("--repeat and --threads must be at least 1, --paced-s above 0")
    profiles = profiles or ["old", "new"]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        raise StartupError(f"unknown profile {unknown[0]} (choose from {', '.join(PROFILES)})")
    wanted = [runtime] if runtime else list(RUNTIMES)
    installed = available_runtimes()
    missing = [r for r in wanted if r not in installed]
    if runtime and missing:
        raise StartupError(f"runtime {runtime} is not installed")
    paced = max(1, min(frames, round(paced_s * FPS)))
    results: dict[str, Any] = {"frames": frames, "warmup": WARMUP, "threads": threads,
                               "paced_frames": paced, "repeat": repeat, "runtimes": {},
                               "missing": missing}
    with tempfile.TemporaryDirectory() as made:
        tmp = str(frame_dir) if frame_dir else made
        if frame_dir is not None and not any(frame_dir.glob("*.jpg")):
            raise StartupError(f"bench: no *.jpg frames in {frame_dir}")
        try:
            if frame_dir is None:
                make_frames(Path(tmp))
        except Exception as e:  # CaptureError when scikit-image is missing
            raise StartupError(f"bench: cannot build frames: {e}") from None
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(repeat):  # profiles interleaved, so drift hits them alike
            for r in (r for r in wanted if r in installed):
                for prof in profiles:
                    cmd = [sys.executable, "-m", "device.bench", "--runtime", r, "--profile",
                           prof, "--frames", str(frames), "--paced-frames", str(paced),
                           "--threads", str(threads), "--dir", tmp]
                    if model_dir:
                        cmd += ["--model-dir", str(model_dir)]
                    runs.setdefault((r, prof), []).append(_run_child(cmd))
        for (rt, prof), rs in runs.items():
            results["runtimes"].setdefault(rt, {})[prof] = _median_run(rs)
    print(json.dumps(results) if as_json else _table(results))
    return 0 if results["runtimes"] and all(
        "error" not in v for by in results["runtimes"].values() for v in by.values()) else 1


def _main() -> int:
    ap = argparse.ArgumentParser(description="moodcam bench child (one runtime, one profile)")
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--profile", required=True, choices=list(PROFILES))
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--paced-frames", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--model-dir")
    a = ap.parse_args()
    try:
        out = child(a.runtime, a.profile, a.frames, a.paced_frames, a.threads, Path(a.dir),
                    Path(a.model_dir) if a.model_dir else None)
    except StartupError as e:
        print(f"moodcam bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
