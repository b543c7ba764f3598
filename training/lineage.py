"""The commands that rebuild a run, its teachers and members first, from their run states.

A distilled run needs its teacher, an ensemble its members, and those may be ensembles or
students themselves; each run's checkpoint/state.json keeps the options it was trained
with, so the whole chain is written into the model card from what actually ran rather
than from memory.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from training.fit import FitOptions
from training.runstate import read_state

# Options of one session's invocation, not of the recipe: left out of the command.
_SESSION_ONLY = {"resume", "export_now", "stop_by", "data", "out"}
# Options whose flag says the opposite of the field.
_NEGATED = {"augment": "--no-augment", "flip_average": "--no-flip-average",
            "count_thresholds": "--flat-threshold"}


def _flag_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def fit_command(options: dict[str, Any], data: str = "fer2013.zip") -> str:
    """`moodcam-train fit ...` with the flags that differ from fit's defaults.

    The run's own `--out` is kept, since teachers and members are named by it."""
    defaults = {f.name: f.default for f in dataclasses.fields(FitOptions)
                if f.default is not dataclasses.MISSING}
    args = ["moodcam-train", "fit", "--data", data, "--out", str(options["out"]), "--resume"]
    for name, value in options.items():
        if name in _SESSION_ONLY or name not in defaults:
            continue
        default = defaults[name]
        if name in _NEGATED:
            if value is False and default is True:
                args.append(_NEGATED[name])
            continue
        if value in (None, (), []) or value == default or (
                isinstance(default, tuple) and list(default) == value):
            continue
        args += [f"--{name.replace('_', '-')}", _flag_value(value)]
    return " ".join(shlex.quote(a) for a in args)


def lineage(options: dict[str, Any], data: str = "fer2013.zip") -> list[str]:
    """The fit commands that train what a run with these options needs, in order, each
    once; a teacher or member whose run state is gone is named as missing."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(run: Path) -> None:
        key = str(run)
        if key in seen:
            return
        seen.add(key)
        try:
            state = read_state(run)
        except ValueError:
            state = None
        if state is None:
            out.append(f"(run {run}: its state is gone, so its command is not known)")
            return
        visit_needs(state.get("options", {}))
        out.append(fit_command({**state.get("options", {}), "out": str(run)}, data))

    def visit_needs(opts: dict[str, Any]) -> None:
        if opts.get("teacher"):
            visit(Path(opts["teacher"]))
        for member in opts.get("members") or ():
            visit(Path(member))

    visit_needs(options)
    return out
