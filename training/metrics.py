"""Evaluation metrics, pure numpy: what the README and model card report.

`emotions` are the data set's own class names (FER's seven); a model with another label
set is scored on the faces its labels cover, plus the faces it should stay quiet about
(the neutral leak) and the whole mix (how honest its happy and sad counts are).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from device.classify import decide_labels
from device.manifest import UNKNOWN
from device.preprocess import softmax
from training.data import map_labels


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence."""
    if len(y) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = softmax(logits, t).astype(np.float64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising validation NLL (golden-section search on log T)."""
    lo, hi = np.log(0.25), np.log(8.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, y, float(np.exp(a))), nll(logits, y, float(np.exp(b)))
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, y, float(np.exp(a)))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, y, float(np.exp(b)))
    return float(np.exp((lo + hi) / 2))


def confusion(y: np.ndarray, decided: list[str], labels: list[str]) -> np.ndarray:
    """Rows: true label; columns: labels then UNCERTAIN."""
    cols = {name: i for i, name in enumerate([*labels, UNKNOWN])}
    cm = np.zeros((len(labels), len(labels) + 1), np.int64)
    for t, d in zip(y, decided, strict=True):
        if t >= 0:
            cm[t, cols[d]] += 1
    return cm


def f1_per_class(cm: np.ndarray, labels: list[str]) -> dict[str, float]:
    out = {}
    for i, name in enumerate(labels):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i].sum() - tp  # UNCERTAIN counts as a miss, as in the 2021 report
        out[name] = float(2 * tp / max(1, 2 * tp + fp + fn))
    return out


def _count_honesty(emotions: list[str], decided: list[str], label: str) -> dict[str, Any]:
    true = np.array([e == label for e in emotions])
    pred = np.array([d == label for d in decided])
    tp = int((true & pred).sum())
    return {
        "true": int(true.sum()), "counted": int(pred.sum()),
        "precision": float(tp / max(1, pred.sum())), "recall": float(tp / max(1, true.sum())),
        "count_error": float((pred.sum() - true.sum()) / max(1, true.sum())),
    }


def count_thresholds(probs: np.ndarray, y: np.ndarray, labels: list[str], floor: float = 0.35,
                     ceiling: float = 0.9) -> dict[str, float]:
    """Per-label minimum confidence at which each label's count matches its true count.

    A flat threshold counts the classes the model is sure of (happy) and under-counts the
    ones it is not (sad); an analyst reads counts, so each label gets the threshold whose
    count on the validation mix is closest to the truth (then precision equals recall).
    """
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    grid = np.round(np.arange(floor, ceiling + 1e-9, 0.01), 2)
    out = {}
    for i, name in enumerate(labels):
        true = int((y == i).sum())
        if true == 0:
            continue
        errors = [abs(int(((top == i) & (conf >= t)).sum()) - true) for t in grid]
        # The highest threshold among equally honest ones: fewer faces change label.
        best = min(range(len(grid)), key=lambda k: (errors[k], -grid[k]))
        out[name] = float(grid[best])
    return out


def evaluate_probs(probs: np.ndarray, emotions: list[str], labels: list[str],
                   thresholds: np.ndarray) -> dict[str, Any]:
    """Every reported number for one model on one labelled set, deciding as the device
    does (argmax, `unknown` below that label's threshold)."""
    thresholds = np.asarray(thresholds, np.float64)
    y = map_labels(emotions, tuple(labels))
    decided = decide_labels(probs, labels, thresholds)
    inset = y >= 0
    out: dict[str, Any] = {"images": len(emotions),
                           "thresholds": {lab: float(t) for lab, t in
                                          zip(labels, thresholds, strict=True)}}
    if "happy" in labels and "sad" in labels:
        hi, si = labels.index("happy"), labels.index("sad")
        hs = np.array([e in ("happy", "sad") for e in emotions])
        truth = np.array([e == "sad" for e in emotions])[hs]
        pred_sad = probs[hs][:, si] > probs[hs][:, hi]
        out["happy_vs_sad"] = {"accuracy": float((pred_sad == truth).mean()) if hs.any()
                               else float("nan"), "n": int(hs.sum())}
    neutral = [d for d, e in zip(decided, emotions, strict=True) if e == "neutral"]
    if neutral:
        out["neutral_leak"] = {
            "rate": float(np.mean([d in ("happy", "sad") for d in neutral])),
            "as_happy": float(np.mean([d == "happy" for d in neutral])),
            "as_sad": float(np.mean([d == "sad" for d in neutral])), "n": len(neutral)}
    if inset.any():
        dec_in = np.array(decided, dtype=object)[inset]
        yt = y[inset]
        covered = dec_in != UNKNOWN
        correct = np.array([labels[t] == d for t, d in zip(yt, dec_in, strict=True)])
        out["accuracy_argmax"] = float((probs[inset].argmax(axis=1) == yt).mean())
        out["coverage"] = float(covered.mean())
        out["accuracy_covered"] = float(correct[covered].mean()) if covered.any() else 0.0
        out["ece"] = ece(probs[inset], yt)
        cm = confusion(y, decided, labels)
        out["confusion"] = {"rows": labels, "columns": [*labels, "UNCERTAIN"],
                            "matrix": cm.tolist()}
        out["f1"] = f1_per_class(cm, labels)
    out["counts"] = {lab: _count_honesty(emotions, decided, lab)
                     for lab in ("happy", "sad") if lab in labels}
    return out


def threshold_text(m: dict[str, Any]) -> str:
    """'0.55' for one threshold, 'happy 0.48 / sad 0.41 / ...' for per-label ones."""
    th: dict[str, float] = m["thresholds"]
    if len(set(th.values())) == 1:
        return f"{next(iter(th.values())):.2f}"
    return " / ".join(f"{lab} {t:.2f}" for lab, t in th.items())
