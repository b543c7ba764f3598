"""Drawn cartoon faces for training tests that must run without ../shared.

A mouth curving up, down or flat is learnable in a few epochs, so a tiny end-to-end run
can check that training actually learns, not just that it runs.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

MOUTHS = {"happy": 1, "sad": -1, "neutral": 0, "angry": 0, "surprise": 2}


def face(label: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    img = np.full((size, size), int(rng.integers(60, 120)), np.uint8)
    c = size // 2 + int(rng.integers(-2, 3))
    cv2.ellipse(img, (c, c), (size // 3, size * 2 // 5), 0, 0, 360,
                int(rng.integers(170, 230)), -1)
    for dx in (-size // 7, size // 7):
        cv2.circle(img, (c + dx, c - size // 8), max(2, size // 16), 30, -1)
    kind = MOUTHS[label]
    w, y = size // 5, c + size // 6
    if kind == 0:
        cv2.line(img, (c - w, y), (c + w, y), 30, 2)
    elif kind == 2:
        cv2.circle(img, (c, y), size // 10, 30, -1)
    else:
        cv2.ellipse(img, (c, y - kind * w // 2), (w, w // 2 + 1), 0,
                    0 if kind > 0 else 180, 180 if kind > 0 else 360, 30, 2)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_tree(root: Path, per_class: dict[str, dict[str, int]], seed: int = 0,
               names: dict[str, str] | None = None, ext: str = ".png") -> Path:
    """root/<split>/<label>/<n>.png with per_class[split][label] images."""
    rng = np.random.default_rng(seed)
    for split, labels in per_class.items():
        for label, n in labels.items():
            d = root / split / (names or {}).get(label, label)
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{split}_{label}_{i}{ext}"), face(label, rng))
    return root


def zip_tree(root: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    return out


# A tree small enough for a fit of a few 32 px epochs in seconds, with an "other" class.
TINY = {"train": {"happy": 24, "sad": 24, "neutral": 24, "angry": 12},
        "test": {"happy": 6, "sad": 6, "neutral": 6, "angry": 3}}


def fit_tiny(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`moodcam-train fit` at 32 px without augmentation or framing, as a subprocess (its
    exit code and one-line errors are part of what the tests check)."""
    return subprocess.run(
        [sys.executable, "-m", "training.cli", "fit", "--data", str(data), "--out", str(out),
         "--size", "32", "--batch", "32", "--crop-scale", "1.0", "--no-augment",
         "--version", "t", *extra], capture_output=True, text=True, timeout=600)
