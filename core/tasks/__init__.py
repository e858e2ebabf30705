"""Tasks: what a network learns. The contract (``base``), synthetic sequence tasks and a
bundled corpus (``synthetic``), toy translation tasks (``translation``) and character
vocabularies (``vocab``). ``make_task`` is the one registry of task names.
"""

from __future__ import annotations

from core.config import Experiment
from core.errors import UserError
from core.tasks.base import Task


def task_classes() -> dict[str, type[Task]]:
    """Every task class by name (core.config.TASKS lists the same names; a test checks it)."""
    from core.tasks.synthetic import SEQUENCE_TASKS
    from core.tasks.translation import TRANSLATION_TASKS

    return {cls.name: cls for cls in (*SEQUENCE_TASKS, *TRANSLATION_TASKS)}


def make_task(exp: Experiment) -> Task:
    """The task ``exp.task`` names, for this experiment."""
    classes = task_classes()
    if exp.task not in classes:
        raise UserError(f"unknown task {exp.task!r}; known: {', '.join(classes)}")
    return classes[exp.task](exp)
