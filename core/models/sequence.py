"""A recurrent stack with a linear readout, trained on one of core.tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.batch import Batch
from core.config import Experiment
from core.models.recurrent import State, Trace, make_recurrent


class SequenceModel(nn.Module):
    """[embedding ->] recurrent (make_recurrent) -> Linear readout, with the task's loss.

    readout "last": one prediction [B, O] from the top layer's final state h_n (the last
                    real step of each sequence when padding is masked).
    readout "all":  one prediction per step [T, B, O] from the top layer's outputs.
    embedding (``exp.embedding`` on): an nn.Embedding [V, embed_size] applied to the one-hot
    inputs as ``x @ E`` (exactly E[id] for one-hot rows, 0 at padding), so batches stay the
    same and the weight keeps torch's name and shape.
    """

    def __init__(self, exp: Experiment, input_size: int, output_size: int,
                 readout: str = "all", loss_kind: str = "mse", class_names: tuple[str, ...] = ()):
        super().__init__()
        self.exp = exp
        self.readout_kind = readout
        self.loss_kind = loss_kind
        self.class_names = class_names
        self.embedding = nn.Embedding(input_size, exp.embed_size) if exp.embedding == "on" else None
        self.recurrent = make_recurrent(exp.cell, exp.embed_size if self.embedding is not None else input_size,
                                        exp.hidden_size, exp.num_layers,
                                        exp.nonlinearity if exp.cell == "rnn" else "tanh", exp.bias == "on")
        self.readout = nn.Linear(exp.hidden_size, output_size)

    def inputs(self, batch: Batch) -> Tensor:
        """[T, B, I] what the recurrent stack reads (embedded when there is an embedding)."""
        return batch.x if self.embedding is None else batch.x @ self.embedding.weight

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
        x = self.inputs(batch)
        T = x.shape[0]
        if not detach_every or detach_every >= T:
            out, state, _ = self.recurrent(x, trace=False, **kwargs)
            return out, state
        if kwargs:  # padded chunks: the loop handles masks and detaching in one pass
            out, state, _ = self.recurrent(x, detach_every=detach_every, **kwargs)
            return out, state
        outs, state = [], None
        for chunk in x.split(detach_every):
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
        if self.loss_kind == "norm":  # no head to differentiate: the top layer's last state norm
            h_n = state[0] if isinstance(state, tuple) else state
            return h_n[-1].norm(dim=-1).mean(), {}
        pred = self.predict(out, state)
        y = batch.y
        if self.readout_kind == "last":
            if self.loss_kind == "ce":
                return F.cross_entropy(pred, y), self._class_metrics(pred, y)
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

    def _class_metrics(self, pred: Tensor, y: Tensor) -> dict[str, float]:
        """Accuracy over the batch and for each class present in it ("accuracy_<class>")."""
        with torch.no_grad():
            right = (pred.argmax(-1) == y).float()
            metrics = {"accuracy": float(right.mean())}
            for k, name in enumerate(self.class_names):
                chosen = y == k
                if bool(chosen.any()):
                    metrics[f"accuracy_{name}"] = float(right[chosen].mean())
        return metrics

    def loss(self, batch: Batch, detach_every: int = 0) -> tuple[Tensor, dict[str, float]]:
        out, state = self.run(batch, detach_every)
        return self.loss_from_outputs(out, state, batch)

    def trace(self, batch: Batch, masking: bool | None = None) -> Trace:
        """No-grad probe trace (masking off when ``masking`` is False)."""
        kwargs = self.recurrent_kwargs(batch) if masking is not False else {}
        with torch.no_grad():
            return self.recurrent.probe(self.inputs(batch), **kwargs)
