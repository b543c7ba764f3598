"""The `moodcam` command.

Expected failures (bad config, model, camera, input files) print one line on stderr and
exit non-zero; only bugs produce tracebacks.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from device import __version__
from device.assemble import (
    StartupError,
    hostname_device_id,
    load_classifier,
    load_detector,
    make_schedule,
    make_tracker,
)
from device.config import Config, ConfigError, load_config, parse_config

log = logging.getLogger("moodcam")


def _config(path: str | None, device_id: str | None = None) -> Config:
    if path:
        try:
            cfg = load_config(path)
        except ConfigError as e:
            raise StartupError(f"config {path}: " + "; ".join(e.problems), 2) from None
        return cfg.model_copy(update={"device_id": device_id}) if device_id else cfg
    return parse_config({"device_id": device_id or hostname_device_id()})


# -- run ------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from device.daemon import run_daemon

    return run_daemon(args.config, duration=args.duration,
                      print_windows=True if args.json else None)


# -- replay ---------------------------------------------------------------------------
def _origin(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StartupError(f"--start {text!r}: not an ISO 8601 time such as "
                           "2026-11-24T07:00:00Z") from None
    if dt.tzinfo is None:
        raise StartupError(f"--start {text!r}: give a time zone, e.g. a trailing Z for UTC")
    return dt.timestamp()


def _describe_window(p: dict[str, Any]) -> str:
    viewers = ", ".join(f"{k} {v}" for k, v in p["viewers"].items() if v)
    return (f"{p['start']} .. {p['end']} {p['content_id'] or '-'}: "
            f"{p['viewers_total']} viewers ({viewers or 'none'}), "
            f"{p['detections_total']} detections, {p['frames']} frames")


def cmd_replay(args: argparse.Namespace) -> int:
    from device.capture import CaptureError, FolderSource, make_source
    from device.capture.sample import PERIOD_S
    from device.pipeline import Pipeline

    cfg = _config(args.config, args.device_id)
    classifier = load_classifier(cfg, Path(args.model_dir) if args.model_dir else None)
    detector = load_detector(cfg)
    c = cfg.camera
    fps = args.fps or c.max_fps
    frames = args.frames or (int(PERIOD_S * fps) if args.source == "sample" else None)
    try:
        source = make_source(args.source, c.width, c.height, fps, realtime=False,
                             sample_frames=frames)
        if isinstance(source, FolderSource) and not args.fps:
            source = FolderSource(source.spec, 1.0)
        source.open()
    except CaptureError as e:
        raise StartupError(f"source: {e}") from None
    origin = _origin(args.start)
    emitted = 0

    def sink(p: dict[str, Any]) -> None:
        nonlocal emitted
        emitted += 1
        line = json.dumps(p) if args.json else _describe_window(p)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    window = args.window or float(cfg.aggregate.window_s)
    # A finite source's media timeline is stamped from --start; a live one's monotonic
    # timestamps from the wall clock now.
    offset = origin if source.finite else time.time() - time.monotonic()
    pipe = Pipeline.build(detector, classifier, cfg.device_id, window, sink=sink,
                          tracker=make_tracker(cfg), content_id=args.content_id,
                          offset=offset, schedule=make_schedule(cfg))
    period = 1.0 / (source.fps or fps)
    last = None
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                frame = source.read()
            except CaptureError as e:
                raise StartupError(f"source: {e}") from None
            if frame is None:
                break
            ts = frame.ts
            pipe.process(frame.image, ts)
            last = ts
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    if last is not None:
        pipe.close(last + period if source.finite else time.monotonic())
    log.info("%d frames, %d windows", pipe.times.frames, emitted)
    return 0


# -- classify -------------------------------------------------------------------------
def cmd_classify(args: argparse.Namespace) -> int:
    import cv2

    from device.pipeline import Pipeline

    cfg = _config(args.config)
    classifier = load_classifier(cfg, Path(args.model_dir) if args.model_dir else None)
    pipe = Pipeline.build(load_detector(cfg), classifier, cfg.device_id)
    rc = 0
    for path in args.images:
        image = cv2.imread(path, cv2.IMREAD_COLOR) if Path(path).is_file() else None
        if image is None:
            print(f"moodcam: error: cannot read image {path}", file=sys.stderr)
            rc = 1
            continue
        dets = pipe.detect(image)
        moods = pipe.classify(image, dets)
        faces = [{"box": [int(v) for v in box], "label": m.label,
                  "confidence": round(m.confidence, 4)} for box, m in zip(dets.boxes, moods,
                                                                          strict=True)]
        if args.json:
            print(json.dumps({"image": path, "faces": faces}), flush=True)
        else:
            desc = "; ".join(f"{f['label']} {f['confidence']:.2f} at {f['box']}"
                             for f in faces)
            print(f"{path}: {len(faces)} face(s){': ' + desc if faces else ''}", flush=True)
    return rc


# -- small commands -----------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    from device.config import check_config_command

    return check_config_command(args.file)


def cmd_bench(args: argparse.Namespace) -> int:
    from device.bench import run_bench

    profiles = [p.strip() for p in args.profile.split(",") if p.strip()]
    return run_bench(args.frames, args.json, args.runtime,
                     Path(args.model_dir) if args.model_dir else None, profiles,
                     args.repeat, args.threads, args.paced_s,
                     Path(args.frame_dir) if args.frame_dir else None)


def cmd_version(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from device.runtime import available_runtimes

    try:  # its version without importing it (~0.2 s)
        ort = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        ort = "none"
    print(f"moodcam {__version__} (python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"opencv {cv2.__version__}, onnxruntime {ort}, "
          f"runtimes: {', '.join(available_runtimes()) or 'none'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="moodcam", description=__doc__.splitlines()[0]
                                 if __doc__ else None)
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="more logging on stderr (-vv for debug)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (camera -> moods -> MQTT)")
    p.add_argument("--config", help="TOML config file (default: built-in defaults, windows "
                   "printed to stdout, sample camera if none is attached)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="also print each window as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run the pipeline on a video, folder or camera and "
                       "print the windows (no broker)")
    p.add_argument("source", metavar="SOURCE",
                   help="video file, image folder or glob, camera index, URL, or 'sample'")
    p.add_argument("--window", type=float, help="window length in seconds (default: config)")
    p.add_argument("--json", action="store_true", help="one JSON mood payload per line")
    p.add_argument("--fps", type=float, help="frames per second of a folder (default 1) or "
                   "of the sample source")
    p.add_argument("--frames", type=int, help="frames of the sample source (default 24 s)")
    p.add_argument("--start", help="ISO time the source's timeline starts at "
                   "(default 1970-01-01T00:00:00Z)")
    p.add_argument("--content-id", help="content id to tag the windows with")
    p.add_argument("--duration", type=float, help="stop a live source after this many seconds")
    p.add_argument("--config", help="TOML config for detector, model and tracker settings")
    p.add_argument("--model-dir", help="model directory (manifest.json + model)")
    p.add_argument("--device-id", help="device id in the payloads (default: host name)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("classify", help="detect and classify the faces in images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("--config", help="TOML config for detector and model settings")
    p.add_argument("--model-dir", help="model directory (manifest.json + model)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("bench", help="per-stage timings, fps, CPU share at 10 fps and memory "
                       "for each runtime, old defaults beside new")
    p.add_argument("--json", action="store_true")
    p.add_argument("--frames", type=int, default=200, help="frames per runtime (default 200)")
    p.add_argument("--runtime", choices=["ai-edge-litert", "tflite-runtime"],
                   help="only this runtime")
    p.add_argument("--profile", default="old,new",
                   help="comma-separated: old, new (the config defaults), or old plus one "
                   "lever: shrink, skip, per-track, ort; levers not kept: recheck, every6 "
                   "(default old,new)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every profile this many times, interleaved; report medians")
    p.add_argument("--threads", type=int, default=1,
                   help="OpenCV and interpreter threads, on as many pinned cores (default 1)")
    p.add_argument("--paced-s", type=float, default=10.0,
                   help="seconds of frames at 10 fps for the CPU share (default 10)")
    p.add_argument("--model-dir", help="model directory (default: the shipped model)")
    p.add_argument("--frame-dir", help="bench on these *.jpg frames instead of drawing them "
                   "(drawing needs scikit-image)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("version", help="print versions")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("model", help="install, list and roll back model versions")
    from device.modelcli import add_model_commands

    add_model_commands(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command in ("replay", "classify", "bench", "check-config", "version")
    level = [logging.WARNING if quiet else logging.INFO, logging.INFO, logging.DEBUG][
        min(args.verbose, 2)]
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc: int = args.func(args)
    except StartupError as e:
        print(f"moodcam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `moodcam replay ... | head`
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
