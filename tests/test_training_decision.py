"""The decision-rule check: a sad bias is found when it helps and refused when it does not."""

from __future__ import annotations

import numpy as np

from training.decision import decide_index, score_rule, tune_rule

LABELS = ["happy", "sad", "neutral", "other"]


def _faces() -> tuple[np.ndarray, list[str]]:
    """Sad faces whose sad probability sits just under neutral's (a biased model), and
    neutral faces whose neutral probability is clearly ahead."""
    rows, emotions = [], []
    for _ in range(40):
        rows.append([0.05, 0.44, 0.46, 0.05])
        emotions.append("sad")
        rows.append([0.05, 0.15, 0.75, 0.05])
        emotions.append("neutral")
        rows.append([0.85, 0.05, 0.05, 0.05])
        emotions.append("happy")
        rows.append([0.05, 0.05, 0.05, 0.85])
        emotions.append("angry")
    return np.array(rows), emotions


def test_bias_moves_the_argmax_and_thresholds_still_apply() -> None:
    probs = np.array([[0.05, 0.44, 0.46, 0.05]])
    th = np.full(4, 0.4)
    assert decide_index(probs, th)[0] == 2
    bias = np.array([0.0, 0.1, 0.0, 0.0])
    assert decide_index(probs, th, bias)[0] == 1
    assert decide_index(probs, np.array([0.4, 0.5, 0.4, 0.4]), bias)[0] == -1


def test_a_sad_margin_is_found_when_it_raises_sad_recall_for_free() -> None:
    probs, emotions = _faces()
    th = np.full(4, 0.4)
    before = score_rule(decide_index(probs, th), emotions, LABELS)
    assert before.sad_recall == 0.0
    r = tune_rule(probs, emotions, LABELS, th)
    assert r["candidate"]["score"]["sad_recall"] == 1.0
    assert r["candidate"]["score"]["sad_precision"] == 1.0
    assert r["candidate"]["score"]["neutral_leak"] == 0.0
    assert r["best_at_sad_precision"]["rule"]["score"]["sad_recall"] == 1.0


def test_no_candidate_beats_a_rule_already_on_the_models_curve() -> None:
    """Sad and neutral faces the model cannot tell apart: more sad recall costs precision,
    so the search keeps today's recall."""
    probs, emotions = _faces()
    probs[emotions.index("neutral")::4] = [0.05, 0.44, 0.46, 0.05]
    th = np.full(4, 0.4)
    r = tune_rule(probs, emotions, LABELS, th)
    assert r["gain_sad_recall"] == 0.0
    # Counting those sad faces sad counts as many neutral ones: precision 0.5 at best, so
    # no rule reaches 0.6; at 0.5 the best one counts all of them.
    assert r["best_at_sad_precision"] == {"at_least": 0.6, "rule": None}
    half = tune_rule(probs, emotions, LABELS, th, target_precision=0.5)
    assert half["best_at_sad_precision"]["rule"]["score"]["sad_recall"] == 1.0
