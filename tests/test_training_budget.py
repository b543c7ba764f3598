"""`moodcam-train budget`: size and speed of untrained widths, against the device budget."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow", reason="training tests need the [train] extra")


def test_wider_models_are_larger_and_the_views_follow_the_invoke_time() -> None:
    from training.budget import FACE_MS_BUDGET, format_budget, measure

    rows = measure("minixception", 32, [1.0, 2.0], train_steps=3)
    narrow, wide = rows
    assert wide["params"] > 3 * narrow["params"]
    assert wide["int8_bytes"] > narrow["int8_bytes"] and narrow["fits_bytes"]
    for r in rows:
        assert r["invoke_ms"] > 0 and r["train_step_ms"] > 0
        assert r["max_views"] * r["invoke_ms"] <= FACE_MS_BUDGET
        assert r["max_views"] in (1, 2, 4)
    assert narrow["invoke_ratio"] == 1.0 and narrow["train_ratio"] == 1.0
    assert "| minixception | 32 | 2 |" in format_budget(rows)
