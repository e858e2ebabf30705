"""The model a task needs: the one place where tasks meet models.

Tasks say what they need (``model_kind``, sizes, readout, loss); models know nothing of
tasks. Keeping the choice here lets core.tasks and core.models stay independent rooms.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from core.errors import UserError
from core.models.seq2seq import Seq2Seq
from core.models.sequence import SequenceModel
from core.tasks.base import Task


def build_model(task: Task) -> nn.Module:
    """A freshly initialised model for ``task`` (under the caller's random seed)."""
    if task.model_kind == "seq2seq":
        return Seq2Seq(task.exp, len(task.src_vocab), len(task.tgt_vocab))
    if task.model_kind == "sequence":
        return SequenceModel(task.exp, task.input_size, task.output_size, task.readout, task.loss_kind,
                             tuple(getattr(task, "class_names", ())))
    raise ValueError(f"task {task.name!r} asks for an unknown model kind {task.model_kind!r}")


def weight_sizes(weights: Mapping[str, Tensor]) -> dict[str, int]:
    """{"input_size", "output_size"} of weights named as SequenceModel names them (the
    vocabulary size with an embedding; output_size only when there is a readout)."""
    sizes = {}
    if "embedding.weight" in weights:
        sizes["input_size"] = int(weights["embedding.weight"].shape[0])
    elif "recurrent.weight_ih_l0" in weights:
        sizes["input_size"] = int(weights["recurrent.weight_ih_l0"].shape[1])
    if "readout.weight" in weights:
        sizes["output_size"] = int(weights["readout.weight"].shape[0])
    return sizes


def load_weights(model: nn.Module, weights: Mapping[str, Tensor]) -> None:
    """Copy ``weights`` into ``model`` after checking every name and shape (nothing is
    changed on a mismatch). Raises UserError naming the first weight that does not fit."""
    own = model.state_dict()
    for name, value in weights.items():
        if name not in own:
            raise UserError(f"the opened model has {name!r}, which this experiment's model lacks "
                            f"(it has {', '.join(own)})")
        if tuple(value.shape) != tuple(own[name].shape):
            raise UserError(f"the opened model's {name!r} has shape {list(value.shape)}; this experiment "
                            f"needs {list(own[name].shape)} (does the data fit the model?)")
    missing = [k for k in own if k.startswith("recurrent.") and k not in weights]
    if missing:
        raise UserError(f"the opened model lacks {missing[0]!r} (bias or layers differ from the experiment)")
    with torch.no_grad():
        for name, value in weights.items():
            own[name].copy_(value)
