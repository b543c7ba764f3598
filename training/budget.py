"""`moodcam-train budget`: int8 size and invoke time of candidate architectures, untrained.

Size and speed do not depend on the weights, so a candidate can be checked against the
budget (int8 <= 700 KB; invoke x views per face <= 1.5 ms) before hours of training.
Times are medians on one thread with the device runtime; machines differ, so compare the
ratio to the shipped architecture measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BYTES_BUDGET = 700_000
FACE_MS_BUDGET = 1.5


def invoke_ms(tflite: Path, runs: int = 300) -> float:
    from device.runtime import Interpreter

    it = Interpreter(tflite, num_threads=1)
    x = np.zeros(it.input_shape[1:], np.dtype(it.input_dtype))
    for _ in range(20):
        it.invoke(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def train_step_ms(model: Any, size: int, n_classes: int, steps: int, batch: int = 64
                  ) -> float:
    """Median wall ms of one training step (fit's optimizer and loss), after warm-up: the
    relative cost of an epoch, since epochs are steps x images / batch."""
    import keras

    from training.fit import _compile

    _compile(keras, model, 3e-3, 1000)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 1), np.float32)
    y = np.eye(n_classes, dtype=np.float32)[rng.integers(0, n_classes, batch)]
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def measure(arch: str, size: int, widths: list[float], n_classes: int = 4,
            seed: int = 0, train_steps: int = 0) -> list[dict[str, Any]]:
    """`train_steps` > 0 also times that many training steps per width."""
    import keras

    from training.export import convert_int8
    from training.models import build

    keras.utils.set_random_seed(seed)
    rep = np.random.default_rng(seed).integers(0, 256, (32, size, size), np.uint8)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in widths:
            model = build(arch, size, n_classes, w)
            path = Path(tmp) / f"w{w}.tflite"
            path.write_bytes(convert_int8(model, rep))
            ms = invoke_ms(path)
            rows.append({"arch": arch, "size": size, "width": w,
                         "params": int(model.count_params()), "int8_bytes": path.stat().st_size,
                         "invoke_ms": round(ms, 3),
                         # views that fit the per-face budget: 4 (zoom+mirror), 2, or 1
                         "max_views": next((v for v in (4, 2, 1) if v * ms <= FACE_MS_BUDGET),
                                           0),
                         "fits_bytes": path.stat().st_size <= BYTES_BUDGET})
            if train_steps:
                rows[-1]["train_step_ms"] = round(
                    train_step_ms(build(arch, size, n_classes, w), size, n_classes,
                                  train_steps), 1)
    base = float(rows[0]["invoke_ms"])
    for r in rows:
        r["invoke_ratio"] = round(float(r["invoke_ms"]) / base, 2)
        if "train_step_ms" in r:
            r["train_ratio"] = round(float(r["train_step_ms"])
                                     / float(rows[0]["train_step_ms"]), 2)
    return rows


def format_budget(rows: list[dict[str, Any]]) -> str:
    lines = ["| arch | size | width | params | int8 bytes | invoke ms (1 thread) | x first |"
             " views within 1.5 ms | train step ms | x first |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['size']} | {r['width']:g} | {r['params']:,} | "
                     f"{r['int8_bytes']:,}{'' if r['fits_bytes'] else ' (over)'} | "
                     f"{r['invoke_ms']:.3f} | {r['invoke_ratio']:.2f} | {r['max_views']} | "
                     f"{r.get('train_step_ms', '-')} | {r.get('train_ratio', '-')} |")
    return "\n".join(lines)
