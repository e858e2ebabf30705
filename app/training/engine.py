"""What the training process does with the engine: build a trainer, describe a run, capture it.

Imports of core.training (and so torch) happen inside functions, never at module level:
the window imports this module's plain helpers (``live_changes``) before torch is loaded,
and the training process (app.training.loop) pays for the import. No Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.training.messages import ModelFile, RunInfo, SessionFile
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
        data=data_summary(trainer),
        interventions=tuple(getattr(trainer, "interventions", ())),
        lesion=bool(getattr(trainer, "lesion", False)),
    )


# Fields a built trainer changes in place (Trainer.set_learning_rate / set_clip): applying
# only these continues the run with the same weights instead of rebuilding it.
LIVE_FIELDS = frozenset({"lr", "clip", "probe"})


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
    if "probe" in changes:  # typed input: the panels show the same weights on it
        trainer.use_probe(changes["probe"])
    return run_info(trainer)


def export_weights(path: str, trainer: Any) -> list[str]:
    """Write the trainer's model for plain torch (core.models.io.export_model), with the
    task's vocabulary beside it; a job run where the model lives."""
    from core.models.io import export_model
    from core.tasks.typed import task_vocabulary

    return export_model(trainer.model, path, task_vocabulary(trainer.task))


def data_summary(trainer: Any) -> dict:
    """What the task read from the user's files (rows, vocabulary, normalisation), or {}."""
    from core.tasks.user import describe_task

    return describe_task(trainer.task)


def make_trainer(experiment: Experiment) -> Any:
    """Build a core.trainer.Trainer (imports torch on first use)."""
    from core.training.trainer import Trainer

    return Trainer(experiment)


def build_trainer(source: Experiment | SessionFile | ModelFile) -> Any:
    """The training process's trainer: a new one for an Experiment, a saved session's, or
    one around a user's opened model."""
    if isinstance(source, SessionFile):
        from core.session.format import open_session

        return open_session(source.path)
    if isinstance(source, ModelFile):
        from core.training.opened import opened_trainer

        return opened_trainer(source.experiment, source.path, source.prefix, embedding=source.embedding,
                              head=source.head, vocab=source.vocab, nonlinearity=source.nonlinearity)
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


def prepare_data(experiment: Experiment, trainer: Any = None) -> Experiment:
    """``experiment`` with its seq_len fitted to its data file (a job: the file is parsed here,
    in the training process, so the window never loads torch). Raises DataError in one line."""
    from core.datafiles import read_file
    from core.tasks.user import fit_sequence_length

    return experiment.replace(seq_len=fit_sequence_length(experiment, read_file(experiment.data)))


def inspect_weights(path: str, trainer: Any = None) -> Any:
    """What a model file holds (core.models.io.ModelInfo: stacks and candidates), as a job."""
    from core.models.io import inspect_model

    return inspect_model(path)


def probe_records(trainer: Any) -> list:
    """The probe and gradients through time on the current probe (after typed input), as the
    records a step would carry; a job, so an idle run shows them too."""
    records = [trainer.probe()]
    gradients = trainer.gradients()
    return records + ([gradients] if gradients is not None else [])
