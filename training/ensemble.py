"""`fit --members RUN,RUN...`: finished fit runs as one model, their logits averaged.

The ensemble is a single graph, so it exports to one int8 `.tflite` that the device runs
unchanged, and `fit` calibrates, thresholds, evaluates and reports it like a trained run.
Its float model is written as the run's checkpoint, so it can also teach a student
(`fit --teacher ENSEMBLE_RUN`). Members must see the same faces (size, labels, alignment)
and must come from the same seed and validation fraction: a member trained on another
split would have seen the ensemble's validation faces, and every choice made there
(temperature, thresholds, views) would be flattered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.distill import load_teacher
from training.runstate import options_json, read_state

# What a member must share with the ensemble, and why it is refused otherwise.
_SAME_FACES = ("size", "labels", "align")
SAME_SPLIT = ("seed", "val_fraction", "max_per_class")


def member_state(run: Path) -> dict[str, Any]:
    state = read_state(run)
    if state is None:
        raise ValueError(f"--members {run}: not a fit run (no checkpoint/state.json)")
    state.setdefault("options", {}).setdefault("align", "none")
    return state


def check_members(runs: list[Path], mine: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's run state, after checking it sees the ensemble's faces and split."""
    if len(runs) < 2:
        raise ValueError("--members needs at least two fit runs (RUN,RUN)")
    found = []
    for run in runs:
        state = member_state(run)
        theirs = state["options"]
        for keys, what in ((_SAME_FACES, "see the same faces"),
                           (SAME_SPLIT, "hold out the same validation faces")):
            a = {k: mine.get(k) for k in keys}
            b = {k: theirs.get(k) for k in keys}
            if a != b:
                raise ValueError(f"--members {run} was trained with {b}; this run uses {a}:"
                                 f" members must {what}")
        found.append(state)
    return found


def build_ensemble(runs: list[Path], size: int, labels: str, align: str) -> Any:
    """One Keras model: the face into every member (best weights), logits averaged."""
    import keras

    inp = keras.Input((size, size, 1), name="face")
    outs = []
    for i, run in enumerate(runs):
        member = load_teacher(run, size, labels, align)
        member.name = f"member_{i}"  # loaded members share their architecture's name
        outs.append(member(inp))
    return keras.Model(inp, keras.layers.Average(name="logits")(outs), name="ensemble")


def ensemble_run(opts: Any) -> tuple[Any, dict[str, Any]]:
    """The ensemble model and the run state `fit` reports; the model is saved where
    `--teacher` and `--resume --export-now` look for a run's float model."""
    from training.fit import Checkpointer

    runs = [Path(r) for r in opts.members]
    mine = options_json(opts)
    states = check_members(runs, mine)
    model = build_ensemble(runs, opts.size, opts.labels, opts.align)
    members = [{"run": str(run), "arch": st["options"].get("arch"),
                "width": st["options"].get("width"), "epochs": st.get("epoch"),
                "best_epoch": st.get("best_epoch"), "wall_s": st.get("wall_s")}
               for run, st in zip(runs, states, strict=True)]
    state = {"epoch": 0, "history": {}, "best_val_loss": None, "best_epoch": None,
             "wall_s": 0.0, "options": mine, "members": members}
    ck = Checkpointer(opts.out)
    ck.best_path.unlink(missing_ok=True)  # a member's weights never stand for the whole
    ck.save(model, state, best=False)
    return model, state
