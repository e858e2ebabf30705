"""The trainer: one optimiser update per ``step()``, plain-data records out.

It never prints and never touches a GUI. Same experiment (and seed), same numbers: the
model is initialised under the seed, and batches come from a generator seeded with it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from core.config import Experiment
from core.errors import UserError
from core.instruments.bptt import gradient_record
from core.instruments.spectrum import spectrum_record
from core.models.init import initialise, set_forget_bias
from core.names import HELDOUT_METRICS
from core.records import GradientRecord, ProbeDirection, ProbeRecord, SpectrumRecord, StepRecord
from core.tasks import make_task
from core.training.build import build_model
from core.training.clipping import clip_and_measure
from core.training.history import History
from core.training.resources import check_resources
from core.training.rollback import LastGood
from core.training.schedules import coin_generator, teacher_forcing_ratio

# Held-out evaluation (translation tasks) rides on every EVAL_EVERY-th step's record and on
# the budget's last: it decodes the whole held-out split twice (about 400 sources), which
# costs a few training steps, so not every step.
EVAL_EVERY = 50

OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available here; use device 'cpu'")
    return torch.device(name)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _hidden(trace) -> tuple[np.ndarray, ...]:
    """Batch element 0's h_t per layer, [T, H] each."""
    return tuple(_numpy(h[:, 0]) for h in trace.hidden)


def _direction(trace) -> tuple:
    """(hidden, cell, gates) of batch element 0 of one direction of a trace."""
    return (_hidden(trace),
            tuple(_numpy(c[:, 0]) for c in trace.cell) if trace.cell is not None else None,
            tuple({k: _numpy(v[:, 0]) for k, v in g.items()} for g in trace.gates))


class Trainer:
    """Trains ``experiment`` one step at a time.

    Attributes:
        task: the core.tasks.Task (baseline, target, probe batch).
        model: the task's model; ``model.recurrent`` is the instrumented stack.
        history: per-step scalars (core.history.History), bounded at 8 bytes a value.
    """

    def __init__(self, experiment: Experiment):
        check_resources(experiment)
        self.experiment = experiment
        self.device = str(resolve_device(experiment.device))
        self.task = make_task(experiment)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(experiment.seed)
            model = build_model(self.task)
            initialise(model.recurrent, experiment.init, experiment.spectral_radius)
            if experiment.cell == "lstm":  # every LSTM stack: a seq2seq model's decoder too
                for stack in model.modules():
                    if getattr(stack, "kind", None) == "lstm" and hasattr(stack, "layer_weights"):
                        set_forget_bias(stack, experiment.forget_bias)
        self.model = model.to(self.device)
        # foreach: a few calls for all parameters instead of ~10 per parameter, each of which
        # takes the GIL that the app's drawing thread needs too.
        self.optimizer = OPTIMIZER_CLASSES[experiment.optimizer](self.model.parameters(), lr=experiment.lr, foreach=True)
        self.generator = torch.Generator().manual_seed(experiment.seed)
        self.step_count = 0
        self.history = History()
        self.last_good = LastGood()  # where a diverged step takes the model back to
        self._probe_batch = None

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ----------------------------------------------------------------- training
    def step(self, *, probe: bool = False, gradients: bool = False, spectrum: bool = False) -> StepRecord:
        """One optimiser update on a fresh batch.

        A non-finite loss or gradient is not applied, and the model and optimizer go back to
        the last good state (core.training.rollback: the weights of the last step with a sane loss),
        from which training can continue with a lower learning rate or clipping; the step
        count keeps counting, and ``record.restored_step`` says which step's state it is.
        """
        exp = self.experiment
        start = time.perf_counter()
        self.model.train()
        batch = self.task.sample(exp.batch_size, self.generator).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if self.task.model_kind == "seq2seq":
            ratio = teacher_forcing_ratio(exp, self.step_count)
            loss, metrics = self.model.loss(batch, exp.tbptt, ratio, coin_generator(exp.seed, self.step_count))
            if exp.teacher_forcing < 1:
                metrics["teacher_forcing"] = ratio
        else:
            loss, metrics = self.model.loss(batch, exp.tbptt)
        loss_value = float(loss.detach())
        if math.isfinite(loss_value):
            loss.backward()
            before, after, clipped, per_param = clip_and_measure(self.model.named_parameters(), exp.clip)
        else:
            before = after = float("nan")
            clipped, per_param = False, {}
        diverged = not (math.isfinite(loss_value) and math.isfinite(before))
        restored = None
        if not diverged:
            self.last_good.offer(self.model, self.optimizer, self.step_count, loss_value)
            self.optimizer.step()
            self.step_count += 1
        else:
            restored = self.last_good.restore(self.model, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        if not diverged and self._evaluation_due():
            metrics.update(self.heldout_metrics())
        record = StepRecord(
            step=self.step_count, loss=loss_value, grad_norm=before, grad_norm_clipped=after,
            clipped=clipped, diverged=diverged, metrics=metrics, param_grad_norms=per_param,
            seconds=time.perf_counter() - start, restored_step=restored,
        )
        self.history.append(record)
        if probe or gradients or spectrum:
            record = dataclasses.replace(
                record,
                probe=self.probe() if probe else None,
                gradients=self.gradients() if gradients else None,
                spectrum=self.spectrum() if spectrum else None,
            )
        return record

    def _evaluation_due(self) -> bool:
        n = self.step_count
        return hasattr(self.task, "evaluate") and (n % EVAL_EVERY == 0 or n == self.experiment.steps)

    def heldout_metrics(self) -> dict[str, float]:
        """Held-out token accuracy teacher-forced and free running, and exact match
        (core.names.HELDOUT_METRICS)."""
        ev = self.evaluate()
        if "exact_match" not in ev:
            return {}
        forced, free, exact = HELDOUT_METRICS
        return {forced: ev["token_accuracy_teacher_forced"], free: ev["token_accuracy"], exact: ev["exact_match"]}

    def run(self, steps: int, **attach) -> Iterator[StepRecord]:
        """Yield one record per update; stops early (after yielding it) on divergence."""
        for _ in range(steps):
            record = self.step(**attach)
            yield record
            if record.diverged:
                return

    def set_learning_rate(self, lr: float) -> None:
        """Change the learning rate in place (continue after a divergence)."""
        self.experiment = self.experiment.replace(lr=lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.experiment.lr

    def set_clip(self, clip: float) -> None:
        self.experiment = self.experiment.replace(clip=clip)

    # ----------------------------------------------------------- instrumentation
    def probe_batch(self):
        if self._probe_batch is None:
            self._probe_batch = self.task.probe_batch().to(self.device)
        return self._probe_batch

    def probe(self) -> ProbeRecord:
        """Hidden states and gates on the probe sequence (batch element 0)."""
        batch = self.probe_batch()
        self.model.eval()
        trace = self.model.trace(batch)
        valid = batch.valid[:, 0] if batch.valid is not None else torch.ones(batch.x.shape[0], dtype=torch.bool)
        unmasked = None
        if batch.valid is not None and not bool(batch.valid.all()):
            unmasked = self.model.trace(batch, masking=False)
        backward = None
        if trace.reverse is not None:
            backward = ProbeDirection(*_direction(trace.reverse),
                                      unmasked_hidden=None if unmasked is None else _hidden(unmasked.reverse))
        hidden, cell, gates = _direction(trace)
        return ProbeRecord(
            step=self.step_count,
            kind=trace.kind,
            labels=batch.labels,
            inputs=_numpy(batch.x[:, 0]),
            valid=valid.cpu().numpy().copy(),
            hidden=hidden,
            cell=cell,
            gates=gates,
            unmasked_hidden=None if unmasked is None else _hidden(unmasked),
            backward=backward,
        )

    def gradients(self) -> GradientRecord | None:
        """||dL/dh_t|| through time on the probe batch (None for translation tasks)."""
        if not hasattr(self.model, "loss_from_outputs"):
            return None
        return gradient_record(self.model, self.probe_batch(), self.step_count, self.experiment.tbptt)

    def spectrum(self) -> SpectrumRecord:
        return spectrum_record(self.model.recurrent, self.step_count)

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics when the task defines them (translation: exact match)."""
        evaluate = getattr(self.task, "evaluate", None)
        return evaluate(self.model) if evaluate else {}
