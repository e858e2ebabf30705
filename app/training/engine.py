"""What the training process does with the engine: build a trainer, describe a run, capture it.

Imports of core.training (and so torch) happen inside functions, never at module level:
the window imports this module's plain helpers (``live_changes``) before torch is loaded,
and the training process (app.training.loop) pays for the import. No Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.training.messages import RunInfo, SessionFile
from core.config import Experiment
from core.records import StepRecord


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
        interventions=tuple(getattr(trainer, "interventions", ())),
        lesion=bool(getattr(trainer, "lesion", False)),
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
    from core.training.trainer import Trainer

    return Trainer(experiment)


def build_trainer(source: Experiment | SessionFile) -> Any:
    """The training process's trainer: a new one for an Experiment, or a saved session's."""
    if isinstance(source, SessionFile):
        from core.session.format import open_session

        return open_session(source.path)
    return make_trainer(source)


def capture(trainer: Any) -> tuple[dict, dict]:
    """The trainer's state as CPU copies, for a session file (milliseconds; a worker job)."""
    from core.session.snapshot import trainer_state

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
