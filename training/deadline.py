"""`fit --stop-by TIME`: end a run after the last epoch that can finish before TIME.

A run longer than a session (whose processes end with it) is stopped right after an
epoch's checkpoint and goes on with --resume later; an epoch cut off midway is lost work.
The next epoch is assumed to take as long as the last one, with slack, because epochs on a
shared machine vary by ~25% (session 14: 868-1,101 s an epoch).
"""

from __future__ import annotations

import datetime as dt

SLACK = 1.25  # the next epoch may take this much longer than the last one ...
MARGIN_S = 60.0  # ... plus this, for the checkpoint write and a carry-out after it


class DeadlineReached(Exception):
    """Training stopped for --stop-by with epochs left; the checkpoint is current."""

    def __init__(self, epoch: int, epochs: int) -> None:
        super().__init__(f"stopped at epoch {epoch} of {epochs}: no room for another epoch"
                         " before --stop-by; go on with --resume")
        self.epoch, self.epochs = epoch, epochs


def parse_stop_by(text: str) -> float:
    """A full date and time ("2026-12-05 04:20", ISO 8601; local time unless it names a
    zone) as a Unix time. A bare time is refused: near midnight it would mean the wrong day."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
        if len(text.strip()) <= len("2026-12-05"):  # a date alone: midnight, likely a slip
            raise ValueError
    except ValueError:
        raise ValueError(f"--stop-by {text!r}: not a date and time; give one like"
                         " '2026-12-05 04:20' (local time) or '2026-12-05T04:20Z'") from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive: this machine's local time
    return when.timestamp()


def room_for_epoch(now: float, deadline: float, epoch_s: float) -> bool:
    """Whether an epoch like the last one (epoch_s long) ends before the deadline."""
    return now + epoch_s * SLACK + MARGIN_S <= deadline
