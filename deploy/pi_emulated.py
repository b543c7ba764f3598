"""Host-side helpers of deploy/pi-emulated.sh (run with the x86 dev venv).

    pi_emulated.py images OUT FER_ZIP   real face images and a replay sequence
    pi_emulated.py compare X86_DIR PI_DIR   aarch64 results against x86, per runtime
    pi_emulated.py bench X86_JSON PI_JSON   old vs new defaults on both machines
    pi_emulated.py models X86_DIR PI_DIR    the shipped model's cost a face against another's
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNTIMES = ("ai-edge-litert", "tflite-runtime")
# Labels must match exactly; confidences nearly. With ai-edge-litert (XNNPACK on both) the
# one-view model agreed within 0.002; averaging four views (one a float resize, whose SIMD
# rounding may differ between AVX and NEON) measured up to 0.0071. tflite-runtime's own
# kernels differ by a few output quanta (measured up to 0.03 here).
TOL = {"ai-edge-litert": 0.01, "tflite-runtime": 0.05}


def images(out: Path, fer: Path) -> None:
    """skimage's astronaut, a 30-face mosaic of it, a blank frame, FER-2013 test images
    (48x48, upscaled and padded so the detector sees a whole head), and 18 replay frames."""
    import cv2
    import numpy as np
    from skimage import data

    sys.path.insert(0, str(REPO))
    from tests.test_detect import mosaic

    astro = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    crowd = mosaic(astro)
    img = out / "images"
    img.mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    cv2.imwrite(str(img / "astronaut.png"), astro)
    cv2.imwrite(str(img / "crowd30.png"), crowd)
    cv2.imwrite(str(img / "blank.png"), np.full((480, 640, 3), 90, np.uint8))
    happy = None  # the first FER happy face, for the replay
    with zipfile.ZipFile(fer) as z:
        names = sorted(z.namelist())
        for cls in ("happy", "sad", "neutral", "surprise", "angry"):
            for n in [n for n in names
                      if n.startswith(f"test/{cls}/") and n.endswith(".jpg")][:3]:
                g = cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_GRAYSCALE)
                if g is None:
                    raise SystemExit(f"{fer}: {n} is not an image")
                g = cv2.resize(g, (192, 192), interpolation=cv2.INTER_CUBIC)
                g = cv2.copyMakeBorder(g, 64, 64, 64, 64, cv2.BORDER_REPLICATE)
                cv2.imwrite(str(img / f"fer-{cls}-{Path(n).stem}.png"), g)
                if happy is None:
                    happy = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    if happy is None:
        raise SystemExit(f"{fer}: no test/happy/*.jpg")
    for i in range(18):  # 6 s each of one face, another face, the crowd
        cv2.imwrite(str(out / "frames" / f"{i:03d}.png"), [astro, happy, crowd][i // 6])


def _load(p: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


def _iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def _compare_image(rt: str, r: list[dict[str, Any]], g: list[dict[str, Any]]) -> tuple[
        list[str], float, int]:
    """Faces matched by box overlap: the same count, labels and (nearly) confidences."""
    problems, dconf, dbox = [], 0.0, 0
    if len(r) != len(g):
        problems.append(f"{len(g)} faces vs {len(r)}")
    for f in g:
        m = max(r, key=lambda x: _iou(x["box"], f["box"]), default=None)
        if m is None or _iou(m["box"], f["box"]) < 0.9:
            problems.append(f"no x86 face at {f['box']}")
            continue
        dbox = max(dbox, *(abs(u - v) for u, v in zip(m["box"], f["box"], strict=True)))
        dconf = max(dconf, abs(m["confidence"] - f["confidence"]))
        if m["label"] != f["label"]:
            problems.append(f"{f['label']} vs {m['label']} at {f['box']}")
    if dconf > TOL[rt]:
        problems.append(f"confidence off by {dconf:.4f}")
    return problems, dconf, dbox


def _same_window(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("start", "end", "viewers", "detections", "frames", "dwell_s")
    ca, cb = a["mean_confidence"], b["mean_confidence"]
    return (a["model"]["sha256"] == b["model"]["sha256"] and all(a[k] == b[k] for k in keys)
            and all((ca[k] is None) == (cb[k] is None)
                    and (ca[k] is None or abs(ca[k] - cb[k]) <= TOL["ai-edge-litert"])
                    for k in ca))


def compare(x86_dir: Path, pi_dir: Path) -> int:
    """One line per runtime and image, one per replay window; 1 if anything differs."""
    bad = faces = 0
    for rt in RUNTIMES:
        ref = {Path(o["image"]).name: o["faces"] for o in _load(x86_dir / f"classify-{rt}.jsonl")}
        got = {Path(o["image"]).name: o["faces"] for o in _load(pi_dir / f"classify-{rt}.jsonl")}
        if set(got) != set(ref) or not ref:
            print(f"   {rt}: images differ: {sorted(set(got) ^ set(ref))}")
            bad += 1
        for name in sorted(ref):
            g = got.get(name, [])
            problems, dconf, dbox = _compare_image(rt, ref[name], g)
            faces += len(g)
            labels = ",".join(sorted({f["label"] for f in g})) or "-"
            print(f"   {rt:15} {name:38} {len(g):2} face(s) {labels:14} "
                  f"max|dconf| {dconf:.4f} max|dbox| {dbox}px  "
                  + ("MISMATCH: " + "; ".join(problems) if problems else "same"))
            bad += bool(problems)
    wr, wp = _load(x86_dir / "replay.jsonl"), _load(pi_dir / "replay.jsonl")
    for i, (a, b) in enumerate(zip(wr, wp, strict=False)):
        same = _same_window(a, b)
        print(f"   replay window {i + 1}: {b['start']} viewers {b['viewers_total']} "
              f"detections {b['detections_total']} frames {b['frames']}  "
              + ("same" if same else f"MISMATCH: x86 {a} vs aarch64 {b}"))
        bad += not same
    if len(wr) != len(wp) or not wr:
        print(f"   replay: {len(wp)} windows on aarch64, {len(wr)} on x86")
        bad += 1
    print(f"   {faces} faces compared over {len(RUNTIMES)} runtimes, {len(wp)} replay windows: "
          + ("all same" if not bad else f"{bad} mismatches"))
    return 1 if bad else 0


def bench(x86: Path, pi: Path) -> int:
    """Old vs new defaults per runtime on both machines (`moodcam bench --json` outputs).
    Only ratios within one machine mean anything: qemu's timing is not a Pi's."""
    runs = {"x86": json.loads(x86.read_text()), "aarch64 (qemu)": json.loads(pi.read_text())}
    print("| machine | runtime | old fps | new fps | fps new/old | YuNet ms/detection OpenCV "
          "-> onnxruntime | CPU ms/frame old -> new | core share at 10 fps old -> new "
          "| invokes/frame old -> new |")
    print("|---|---|---|---|---|---|---|---|---|")
    for machine, r in runs.items():
        for rt, by in r["runtimes"].items():
            old, new, ort = by["old"], by["new"], by.get("ort")
            # A machine that cannot keep 10 fps with the old defaults has no share to compare.
            share = (f"{old['cpu_share_10fps']:.1%} -> {new['cpu_share_10fps']:.1%} "
                     f"({new['cpu_share_10fps'] / old['cpu_share_10fps']:.2f}x)"
                     if old["fps"] > 10 else "old below 10 fps: n/a")
            # old and ort detect every frame: their detect stage is one detection's cost.
            det = (f"{old['stage_ms']['detect']:.1f} -> {ort['stage_ms']['detect']:.1f} "
                   f"({old['stage_ms']['detect'] / ort['stage_ms']['detect']:.2f}x)"
                   if ort and "error" not in ort else "n/a")
            print(f"| {machine} | {rt} | {old['fps']:.1f} | {new['fps']:.1f} | "
                  f"{new['fps'] / old['fps']:.2f}x | {det} | {old['cpu_ms_per_frame']:.1f} -> "
                  f"{new['cpu_ms_per_frame']:.1f} | {share} | "
                  f"{old['invokes_per_frame']:.2f} -> {new['invokes_per_frame']:.2f} |")
    return 0


def models(x86: Path, pi: Path) -> int:
    """The shipped model's invoke cost per face against another model's, on each machine
    (`moodcam bench --json --profile new` of each, ai-edge-litert); ratios within a machine."""
    print("| machine | model | int8 invoke() median ms | invokes a face | ms a face"
          " | a face, shipped / other |")
    print("|---|---|---|---|---|---|")
    for machine, d in (("x86", x86), ("aarch64 (qemu)", pi)):
        cost = {}
        for m in ("shipped", "model2"):
            r = json.loads((d / f"model-{m}.json").read_text())["runtimes"]["ai-edge-litert"]
            r = r["new"]
            cost[m] = (r["invoke_ms_median"], r["views_per_face"],
                       r["invoke_ms_median"] * r["views_per_face"])
        for m, (ms, views, face) in cost.items():
            ratio = f"{cost['shipped'][2] / cost['model2'][2]:.2f}x" if m == "shipped" else ""
            print(f"| {machine} | {m} | {ms:.3f} | {views} | {face:.3f} | {ratio} |")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "images":
        images(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    if len(argv) == 3 and argv[0] == "models":
        return models(Path(argv[1]), Path(argv[2]))
    if len(argv) == 3 and argv[0] == "bench":
        return bench(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
