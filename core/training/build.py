"""The model a task needs: the one place where tasks meet models.

Tasks say what they need (``model_kind``, sizes, readout, loss); models know nothing of
tasks. Keeping the choice here lets core.tasks and core.models stay independent rooms.
"""

from __future__ import annotations

from torch import nn

from core.models.seq2seq import Seq2Seq
from core.models.sequence import SequenceModel
from core.tasks.base import Task


def build_model(task: Task) -> nn.Module:
    """A freshly initialised model for ``task`` (under the caller's random seed)."""
    if task.model_kind == "seq2seq":
        return Seq2Seq(task.exp, len(task.src_vocab), len(task.tgt_vocab))
    if task.model_kind == "sequence":
        return SequenceModel(task.exp, task.input_size, task.output_size, task.readout, task.loss_kind)
    raise ValueError(f"task {task.name!r} asks for an unknown model kind {task.model_kind!r}")
