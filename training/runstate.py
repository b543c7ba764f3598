"""A fit run's saved state (`<run>/checkpoint/state.json`, beside its model `last.keras`):
fit writes both at `state_path` and `last_model_path`,
and fit, ensembles, distillation and the model card's lineage all read it here."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def state_path(run: Path) -> Path:
    return run / "checkpoint" / "state.json"


def last_model_path(run: Path) -> Path:
    """The run's model after its last finished epoch (weights and optimizer)."""
    return run / "checkpoint" / "last.keras"


def read_state(run: Path) -> dict[str, Any] | None:
    """The run's state, or None when the run has none (never started, or deleted).
    An unreadable state raises: resuming past it would train over a run's progress."""
    path = state_path(run)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the run state ({e.strerror})") from e
    fix = "restore it from the run's carry, or delete the run to start it over"
    try:
        state = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: the run state is not JSON ({e}); {fix}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the run state is not a JSON object; {fix}")
    return state


def options_json(opts: Any) -> dict[str, Any]:
    """A FitOptions as JSON-ready data, as saved in the run state; the signing key's
    path is left out: it belongs to the machine that signs, not to the run."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return str(v) if isinstance(v, Path) else v

    return {k: plain(v) for k, v in asdict(opts).items() if k != "key"}
