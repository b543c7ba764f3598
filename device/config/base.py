"""What every config section shares: strictness, path fields and the state directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# TOML has no path type: accept strings for paths despite strict mode.
PathField = Annotated[Path, Field(strict=False)]

STATE_DIR = Path("/var/lib/moodcam")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _not_below(section: BaseModel, upper: str, lower: str) -> None:
    """A backoff's ceiling below its start is a typo the error should name."""
    hi, lo = getattr(section, upper), getattr(section, lower)
    if hi < lo:
        raise ValueError(f"{upper}: must be >= {lower} ({lo:g}) (got {hi:g})")
