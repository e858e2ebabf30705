"""A recurrent stack with a linear readout, trained on one of core.tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.batch import Batch
from core.config import Experiment
from core.models.recurrent import State, Trace, make_recurrent


class SequenceModel(nn.Module):
    """recurrent (make_recurrent) -> Linear readout, with the task's loss.

    readout "last": one prediction [B, O] from the top layer's final state h_n.
    readout "all":  one prediction per step [T, B, O] from the top layer's outputs.
    """

    def __init__(self, exp: Experiment, input_size: int, output_size: int,
                 readout: str = "all", loss_kind: str = "mse"):
        super().__init__()
        self.exp = exp
        self.readout_kind = readout
        self.loss_kind = loss_kind
        self.recurrent = make_recurrent(exp.cell, input_size, exp.hidden_size, exp.num_layers,
                                        exp.nonlinearity if exp.cell == "rnn" else "tanh")
        self.readout = nn.Linear(exp.hidden_size, output_size)

    def recurrent_kwargs(self, batch: Batch) -> dict:
        """What the recurrent stack is told about padding (nothing when masking is off)."""
        if self.exp.masking == "off" or batch.valid is None:
            return {}
        if batch.pre_padded:
            return {"mask": batch.valid}
        return {"lengths": batch.lengths}

    def run(self, batch: Batch, detach_every: int = 0) -> tuple[Tensor, State]:
        """Fused forward for training; truncated BPTT detaches the state every k steps."""
        kwargs = self.recurrent_kwargs(batch)
        T = batch.x.shape[0]
        if not detach_every or detach_every >= T:
            out, state, _ = self.recurrent(batch.x, trace=False, **kwargs)
            return out, state
        if kwargs:  # padded chunks: the loop handles masks and detaching in one pass
            out, state, _ = self.recurrent(batch.x, detach_every=detach_every, **kwargs)
            return out, state
        outs, state = [], None
        for chunk in batch.x.split(detach_every):
            if state is not None:
                state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            out, state, _ = self.recurrent(chunk, state, trace=False)
            outs.append(out)
        return torch.cat(outs), state

    def predict(self, out: Tensor, state: State) -> Tensor:
        if self.readout_kind == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            return self.readout(h_n[-1])
        return self.readout(out)

    def loss_from_outputs(self, out: Tensor, state: State, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Task loss (mean over real steps) and metrics from the recurrent outputs."""
        pred = self.predict(out, state)
        y = batch.y
        if self.readout_kind == "last":
            return F.mse_loss(pred, y), {}
        weight = batch.valid.float() if batch.valid is not None else torch.ones(y.shape[:2], device=y.device)
        denom = weight.sum().clamp_min(1.0)
        if self.loss_kind == "ce":
            per_step = F.cross_entropy(pred.flatten(0, 1), y.flatten(), reduction="none").view_as(weight)
            loss = (per_step * weight).sum() / denom
            with torch.no_grad():
                correct = (pred.argmax(-1) == y).float()
                accuracy = float((correct * weight).sum() / denom)
            return loss, {"accuracy": accuracy}
        per_step = ((pred - y) ** 2).mean(-1)
        return (per_step * weight).sum() / denom, {}

    def loss(self, batch: Batch, detach_every: int = 0) -> tuple[Tensor, dict[str, float]]:
        out, state = self.run(batch, detach_every)
        return self.loss_from_outputs(out, state, batch)

    def trace(self, batch: Batch, masking: bool | None = None) -> Trace:
        """No-grad probe trace (masking off when ``masking`` is False)."""
        kwargs = self.recurrent_kwargs(batch) if masking is not False else {}
        return self.recurrent.probe(batch.x, **kwargs)
