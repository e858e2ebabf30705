"""The app's whole surface onto the engine: presets, building a trainer, describing a run.

Imports of ``core.trainer`` (and so torch) happen inside functions, never at module level:
the window paints before torch is loaded, and the training process (app.worker) pays for
the import. No Qt here: the training process imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Experiment
from core.records import StepRecord

DEFAULT_PRESET = "adding-lstm"
PRESET_GROUPS = ("gradients", "gates", "sequences", "decoding", "attention")

# Gate names per cell kind, torch.nn's order (mirrors core.recurrent.GATES, which needs torch).
GATES: dict[str, tuple[str, ...]] = {
    "rnn": (),
    "lstm": ("input", "forget", "cell", "output"),
    "gru": ("reset", "update", "new"),
}
GATE_SYMBOLS = {"input": "i", "forget": "f", "cell": "g", "output": "o",
                "reset": "r", "update": "z", "new": "n"}
# Gates squashed by tanh (signed); the others are sigmoids in [0, 1].
TANH_GATES = frozenset({"cell", "new"})


@dataclass(frozen=True)
class RunInfo:
    """What the panels need to know about a freshly built trainer (plain data)."""

    experiment: Experiment
    task_name: str
    task_title: str
    baseline: float | None
    baseline_label: str
    target: float | None
    param_count: int
    device: str
    step: int

    @property
    def kind(self) -> str:
        return self.experiment.cell

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.experiment.cell]

    @property
    def num_layers(self) -> int:
        return self.experiment.num_layers


def run_info(trainer: Any) -> RunInfo:
    """Describe ``trainer`` (a core.trainer.Trainer) for the GUI thread."""
    task = trainer.task
    baseline = getattr(task, "baseline", None)
    target = getattr(task, "target", None)
    return RunInfo(
        experiment=trainer.experiment,
        task_name=str(task.name),
        task_title=str(getattr(task, "title", task.name)),
        baseline=None if baseline is None else float(baseline),
        baseline_label=str(getattr(task, "baseline_label", "baseline")),
        target=None if target is None else float(target),
        param_count=int(trainer.param_count),
        device=str(trainer.device),
        step=int(trainer.step_count),
    )


# Fields a built trainer changes in place (Trainer.set_learning_rate / set_clip): applying
# only these continues the run with the same weights instead of rebuilding it.
LIVE_FIELDS = frozenset({"lr", "clip"})


def live_changes(running: Experiment, wanted: Experiment) -> dict[str, Any] | None:
    """The LIVE_FIELDS that differ, or None when ``wanted`` differs in any other field."""
    changed = {k: v for k, v in wanted.to_dict().items() if v != getattr(running, k)}
    return changed if set(changed) <= LIVE_FIELDS else None


def retune(trainer: Any, changes: dict[str, Any]) -> RunInfo:
    """Apply live ``changes`` (lr, clip) to ``trainer``; run in the thread that trains it."""
    if "lr" in changes:
        trainer.set_learning_rate(changes["lr"])
    if "clip" in changes:
        trainer.set_clip(changes["clip"])
    return run_info(trainer)


def make_trainer(experiment: Experiment) -> Any:
    """Build a core.trainer.Trainer (imports torch on first use)."""
    from core.trainer import Trainer

    return Trainer(experiment)


@dataclass(frozen=True)
class SessionFile:
    """What the training process builds from when a session is opened (instead of an Experiment)."""

    path: Path


def build_trainer(source: Experiment | SessionFile) -> Any:
    """The training process's trainer: a new one for an Experiment, or a saved session's."""
    if isinstance(source, SessionFile):
        from core.session import open_session

        return open_session(source.path)
    return make_trainer(source)


def capture(trainer: Any) -> tuple[dict, dict]:
    """The trainer's state as CPU copies, for a session file (milliseconds; a worker job)."""
    from core.session import trainer_state

    return trainer_state(trainer)


def history_records(history: Any) -> list[StepRecord]:
    """The steps a trainer's ``core.history.History`` holds, as plain StepRecords (no instruments),
    so panels show a resumed run's past (the loss curve) as if they had watched it."""
    n = len(history)
    if n == 0:
        return []
    cols = {name: history.column(name) for name in history.names}
    metrics = {name[len("metric/"):]: col for name, col in cols.items() if name.startswith("metric/")}
    return [StepRecord(step=int(cols["step"][i]), loss=float(cols["loss"][i]),
                       grad_norm=float(cols["grad_norm"][i]), grad_norm_clipped=float(cols["grad_norm_clipped"][i]),
                       clipped=bool(cols["clipped"][i]), diverged=bool(cols["diverged"][i]),
                       metrics={k: float(v[i]) for k, v in metrics.items() if np.isfinite(v[i])},
                       param_grad_norms={}, seconds=float(cols["seconds"][i]))
            for i in range(n)]


def list_presets() -> list[Any]:
    """Every preset (core.presets.Preset: name, title, group, description, experiment)."""
    from core.presets import list_presets as _list

    return list(_list())


def load_preset(name: str) -> Any:
    """One preset by name; core.errors.PresetError naming the known ones otherwise."""
    from core.presets import load_preset as _load

    return _load(name)


def grouped_presets(presets: list[Any]) -> list[tuple[str, list[Any]]]:
    """Presets grouped in the teaching order of PRESET_GROUPS (unknown groups last)."""
    order = {g: i for i, g in enumerate(PRESET_GROUPS)}
    groups: dict[str, list[Any]] = {}
    for preset in presets:
        groups.setdefault(preset.group, []).append(preset)
    return sorted(groups.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
