"""Tasks: what a network learns. The contract (``base``), synthetic sequence tasks and a
bundled corpus (``synthetic``), toy translation tasks (``translation``), character
vocabularies (``vocab``), and tasks on the user's own files (``files`` reads them, ``user``
learns from them), typed input (``typed``). ``make_task`` is the one registry of task names.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.config import Experiment
from core.errors import UserError
from core.tasks.base import Task


def task_classes() -> dict[str, type[Task]]:
    """Every task class by name (core.config.TASKS lists the same names; a test checks it)."""
    from core.tasks.synthetic import SEQUENCE_TASKS
    from core.tasks.translation import TRANSLATION_TASKS
    from core.tasks.typed import InputsTask
    from core.tasks.user import USER_TASKS

    return {cls.name: cls for cls in (*SEQUENCE_TASKS, *TRANSLATION_TASKS, *USER_TASKS, InputsTask)}


def make_task(exp: Experiment, files: Mapping | None = None, sizes: Mapping[str, int] | None = None) -> Task:
    """The task ``exp.task`` names, for this experiment.

    files: stored copies of the files the experiment names ({path: core.tasks.files.DataFile},
        from a session), read from disk when absent.
    sizes: {"input_size", "output_size"} of opened weights (the ``inputs`` task takes them).
    """
    from core.tasks.typed import InputsTask
    from core.tasks.user import TextTask

    classes = task_classes()
    if exp.task not in classes:
        raise UserError(f"unknown task {exp.task!r}; known: {', '.join(classes)}")
    if exp.task == "charlm" and exp.data:
        return TextTask(exp, files)
    if exp.task == "inputs":
        return InputsTask(exp, files, sizes)
    cls = classes[exp.task]
    if cls.__module__ == "core.tasks.user":
        return cls(exp, files)
    return cls(exp)
