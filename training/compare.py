"""`moodcam-train compare RUN...`: one table of the label-set and architecture runs.

Each run directory holds what `fit` wrote (manifest.json, metrics.json); the table puts the
numbers the training issue asks for side by side, in the README's markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from device.manifest import load_manifest
from training.data import DataError
from training.metrics import threshold_text

COLUMNS = ("run", "labels", "model", "epochs", "happy-vs-sad", "neutral leak (as sad)",
           "own-label acc.", "coverage / acc. covered", "thresholds", "ECE val. before → after",
           "F1 happy / sad", "count error happy / sad", "size", "wall")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


def run_row(run: Path) -> dict[str, str]:
    metrics_path = run / "metrics.json"
    if not metrics_path.exists():
        raise DataError(f"{run}: no metrics.json (not a finished `moodcam-train fit` run)")
    m: dict[str, Any] = json.loads(metrics_path.read_text())
    man = load_manifest(run / "manifest.json")
    opts = man.training.get("options", {})
    val = m.get("validation", {})
    counts = m.get("counts", {})
    f1 = m.get("f1", {})
    nl = m.get("neutral_leak")
    wall = man.training.get("wall_s")
    arch = opts.get("arch", "?")
    width = opts.get("width", 1.0)
    return {
        "run": run.name,
        "labels": ",".join(man.labels),
        "model": (f"ensemble of {len(opts['members'])}" if opts.get("members") else
                  f"{arch}{'' if width == 1.0 else f' x{width:g}'}") + f" {man.size}px"
                 + (" + mirror" if man.flip_average else "")
                 + "".join(f" + {z:g} zoom" for z in man.zoom_views if z != 1.0)
                 + (" + eyes aligned" if man.preprocessing.align == "eyes" else "")
                 + (" + distilled" if opts.get("teacher") else ""),
        "epochs": f"best {man.training.get('best_epoch')} of "
                  f"{man.training.get('epochs')}/{opts.get('epochs', '?')}",
        "happy-vs-sad": _pct(m.get("happy_vs_sad", {}).get("accuracy")),
        "neutral leak (as sad)": "n/a" if not nl else
        f"{nl['rate']:.2%} ({nl['as_sad']:.2%})",
        "own-label acc.": _pct(m.get("accuracy_argmax")),
        "coverage / acc. covered": f"{_pct(m.get('coverage'))} / "
                                   f"{_pct(m.get('accuracy_covered'))}",
        "thresholds": threshold_text(m) if "thresholds" in m else "n/a",
        "ECE val. before → after": (f"{val['ece_before']:.3f} → {val['ece_after']:.3f}"
                                    if val else "n/a"),
        "F1 happy / sad": f"{f1.get('happy', float('nan')):.3f} / "
                          f"{f1.get('sad', float('nan')):.3f}",
        "count error happy / sad": " / ".join(
            f"{counts[k]['count_error']:+.1%}" if k in counts else "n/a"
            for k in ("happy", "sad")),
        "size": f"{man.model_bytes / 1024:.0f} KiB",
        "wall": "n/a" if wall is None else f"{wall / 60:.0f} min",
    }


def comparison_table(runs: list[Path]) -> str:
    rows = [run_row(r) for r in runs]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
