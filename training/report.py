"""The evaluation report (markdown + PNG plots) and the model card."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import confusion_table
from training.metrics import threshold_text


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", axes[0]), ("acc", axes[1])):
        if key in history:
            ax.plot(range(1, len(history[key]) + 1), history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(range(1, len(history[f"val_{key}"]) + 1), history[f"val_{key}"],
                    label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(metrics: dict[str, Any], path: Path, title: str) -> None:
    plt = _plt()
    c = metrics["confusion"]
    cm = np.array(c["matrix"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(c["columns"]) + 2, 1.1 * len(c["rows"]) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(c["columns"])), c["columns"], rotation=30)
    ax.set_yticks(range(len(c["rows"])), c["rows"])
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            ax.text(j, i, f"{norm[i, j]:.0%}\n{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """curves: name -> (probs, y); confidence vs accuracy in 15 bins."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    edges = np.linspace(0, 1, 16)
    for name, (probs, y) in curves.items():
        conf = probs.max(axis=1)
        ok = probs.argmax(axis=1) == y
        xs, ys = [], []
        for lo, hi in itertools.pairwise(edges):
            m = (conf > lo) & (conf <= hi)
            if m.sum() >= 5:
                xs.append(conf[m].mean())
                ys.append(ok[m].mean())
        ax.plot(xs, ys, "o-", label=name)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on validation")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


def summary_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    nl = m.get("neutral_leak", {})
    rows = [
        ("happy-vs-sad accuracy", _pct(m.get("happy_vs_sad", {}).get("accuracy"))),
        (f"neutral leak at {threshold_text(m)}", _pct(nl.get("rate"))),
        ("accuracy, own labels (argmax)", _pct(m.get("accuracy_argmax"))),
        (f"coverage at {threshold_text(m)}", _pct(m.get("coverage"))),
        ("accuracy when covered", _pct(m.get("accuracy_covered"))),
        ("ECE (test, calibrated)", f"{m.get('ece', float('nan')):.3f}"),
    ]
    for lab, c in m.get("counts", {}).items():
        rows.append((f"{lab} count error on the whole test mix", f"{c['count_error']:+.1%}"))
        rows.append((f"{lab} count precision on the whole test mix", _pct(c["precision"])))
    return rows


def _members(ctx: dict[str, Any]) -> str:
    return ", ".join(f"{Path(m['run']).name} ({m['arch']} width {m['width']}, best epoch"
                     f" {m['best_epoch']} of {m['epochs']})" for m in ctx["members"])


def _training_text(ctx: dict[str, Any]) -> str:
    if ctx.get("members"):
        return (f"an ensemble of {len(ctx['members'])} fit runs, their logits averaged in one"
                f" graph, no training of its own: {_members(ctx)}.")
    return (f"wall time {ctx['wall_s'] / 60:.1f} min on {ctx['cpus']} CPU cores;"
            f" {ctx['epochs']} of {ctx['planned_epochs']} planned epochs trained, weights"
            f" from the best validation epoch ({ctx['best_epoch']}).")


def _arch_text(ctx: dict[str, Any]) -> str:
    if ctx.get("members"):
        return f"ensemble (logits averaged) of {_members(ctx)}"
    return f"{ctx['arch']} (width {ctx['width']})"


def threshold_lines(rec: dict[str, Any] | None) -> list[str]:
    """How `fit --thresholds-against` set the happy and sad thresholds, with the figures
    both models reach on the same validation faces."""
    if not rec:
        return ["## Decision thresholds", "", "Per-label thresholds matched to the true"
                " counts on validation.", ""]
    res = rec["result"]
    spans = res.get("gain_intervals_95") or [{} for _ in rec["faces"]]

    def span(iv: list[float] | None) -> str:
        return f" [{iv[0]:+.2%}, {iv[1]:+.2%}] |" if iv else " n/a |"

    rows = [f"| {name}: {k.replace('_', ' ')} | {ref[k]:.2%} | {got[k]:.2%} |{span(iv.get(k))}"
            for name, ref, got, iv in zip(rec["faces"], res["references"], res["scores"],
                                          spans, strict=True)
            for k in got if k in ("sad_recall", "sad_precision", "neutral_leak",
                                  "happy_recall", "happy_precision")]
    if res["qualifies"]:
        how = (f"Happy {res['happy']:.2f} and sad {res['sad']:.2f}: chosen on validation so"
               f" that no count figure is worse than {rec['reference']}'s on the same faces,"
               " counts nearest the truth among such points (`fit --thresholds-against`).")
    else:
        w = res["worst"]
        how = (f"Count-matched: no happy and sad thresholds leave every count figure at least"
               f" as good as {rec['reference']}'s on validation. Nearest (happy"
               f" {res['happy']:.2f}, sad {res['sad']:.2f}, below): {rec['faces'][w['set']]},"
               f" {w['figure'].replace('_', ' ')} short by {w['short_by']:.2%}.")
        interval = spans[w["set"]].get(w["figure"])  # None: no faces of that label
        if interval:
            lo, hi = interval
            how += (f" Resampling the faces (paired bootstrap), its gain over the reference"
                    f" lies in [{lo:+.2%}, {hi:+.2%}] (95%)" + (
                        ": within what the face sample moves." if hi >= 0 else "."))
    return ["## Decision thresholds", "", how, "",
            f"| validation | {rec['reference']} | this model | its gain, 95% interval"
            " (faces resampled in pairs) |", "|---|---|---|---|", *rows, ""]


def write_report(run: Path, ctx: dict[str, Any]) -> Path:
    m = ctx["metrics"]
    lines = [f"# moodcam model report: {ctx['name']} {ctx['version']}", "",
             f"Trained by `{ctx['command']}`; " + _training_text(ctx), "",
             f"## Headline (int8 model, device runtime, {m.get('split', 'test')} split)", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(m)]
    lines += ["", "## Confusion matrix (rows: true; UNCERTAIN = below minimum confidence)", "",
              confusion_table(m), "", "![confusion](confusion.png)", "",
              "## Training curves", "", "![curves](training_curves.png)", "",
              *threshold_lines(ctx.get("thresholds_against")),
              "## Calibration (validation)", "",
              f"Temperature {ctx['temperature']:.3f}: ECE {ctx['ece_before']:.3f} before, "
              f"{ctx['ece_after']:.3f} after temperature scaling.", "",
              "![reliability](reliability.png)", "",
              "## Export", "",
              f"- int8 vs float agreement on test labels: {ctx['agreement']:.2%}",
              f"- model size: {ctx['model_bytes']:,} bytes; sha256 `{ctx['sha256']}`",
              f"- crop framing: scale {ctx['crop_scale']}, shift_y {ctx['crop_shift_y']}"
              f" ({ctx['framing_source']})", *_align_lines(ctx.get("align")), "",
              "## Data", "", "```", _dict_lines(ctx["data_report"]), "```", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path


def _dict_lines(d: dict[str, Any]) -> str:
    import json

    return json.dumps(d, indent=1)


def write_model_card(run: Path, ctx: dict[str, Any]) -> Path:
    m = ctx["metrics"]
    labels = ", ".join(ctx["labels"])
    text = f"""# Model card: {ctx['name']} {ctx['version']}

## Model
- Task: classify a detected face crop as one of: {labels} (below minimum confidence
  ({threshold_text(m)}) the device reports `unknown`).
- Architecture: {_arch_text(ctx)}, input {ctx['size']}x{ctx['size']}x1
  grayscale, trained from scratch; full-integer int8 TFLite, {ctx['model_bytes']:,} bytes.
- Output: logits; the device averages them over the views of each face
  ({ctx.get('views') or 'one view'}) and applies softmax with the
  calibrated temperature {ctx['temperature']:.3f}.

## Intended use
Aggregated, anonymous mood counts beside a digital sign (moodcam). Not for identifying
people, not for decisions about an individual, not for any use where a wrong answer
about one person matters. Counts are estimates; compare trends, not single windows.

## Training data
FER-2013 (Kaggle image-folder release): 48x48 grayscale web faces, research use, no
formal licence. Train/test pixel twins removed from train; near-blank images skipped;
validation is a seeded stratified {ctx['val_fraction']:.0%} of train. Class imbalance
handled with inverse-frequency class weights. Augmented towards camera faces (flips,
shifts, zoom, rotation, brightness, contrast, gamma, blur/sharpen, noise, down-up scaling).

## Evaluation (int8, device runtime, FER-2013 test)
""" + "\n".join(f"- {k}: {v}" for k, v in summary_rows(m)) + f"""

## Limitations and biases
- FER-2013 is web imagery: posed and spontaneous expressions, skewed in age, ethnicity
  and lighting; accuracy on a real shop camera will be lower than on FER's test set.
- Expressions are not emotions: a smile is counted as happy whatever the person feels.
- Neutral faces are the majority at a real sign; the neutral leak above is how often such
  a face is still counted as happy or sad.
- Grayscale, frontal faces; profile views and occluded faces are mostly `unknown` or
  missed by the detector.

## Reproduce
{_lineage_text(ctx.get('lineage') or [])}`{ctx['command']}` then
`moodcam-train evaluate --model {ctx['model_ref']} --data fer2013.zip`.{_reference_text(ctx)}
"""
    path = run / "MODEL_CARD.md"
    path.write_text(text)
    return path


def _reference_text(ctx: dict[str, Any]) -> str:
    rec = ctx.get("thresholds_against")
    if not rec:
        return ""
    return (f" `--thresholds-against` named the model this one was judged against,"
            f" {rec['reference']}.")


def _lineage_text(commands: list[str]) -> str:
    if not commands:
        return ""
    steps = "".join(f"{i}. `{c}`\n" for i, c in enumerate(commands, 1))
    return ("First train the runs it is built from (teachers, ensemble members), in this"
            " order; each resumes from its checkpoint:\n\n" + steps + "\nThen ")


def _align_lines(align: dict[str, Any] | None) -> list[str]:
    if not align:
        return []
    return [f"- face alignment: eyes level, {align['align_eye_distance']} of the side apart,"
            f" {align['align_eye_y']} from the top (medians on validation); YuNet landmarks"
            f" on {align['found_rate']:.1%} of validation faces, the rest as cropped"]

