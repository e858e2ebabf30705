"""The trainer: one optimiser update per ``step()``, plain-data records out.

It never prints and never touches a GUI. Same experiment (and seed), same numbers: the
model is initialised under the seed, and batches come from a generator seeded with it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from core.config import Experiment
from core.datafiles import DataFile, experiment_files
from core.errors import UserError
from core.instruments.bptt import gradient_record
from core.instruments.dynamics import stack_states
from core.instruments.dynamics_record import ZERO, dynamics_record, input_symbols, parse_input
from core.instruments.spectrum import spectrum_record
from core.models.init import initialise, set_forget_bias
from core.names import HELDOUT_METRICS
from core.records import (
    AblationRecord,
    CounterfactualRecord,
    DynamicsRecord,
    GradientRecord,
    ProbeDirection,
    ProbeRecord,
    SpectrumRecord,
    StepRecord,
)
from core.tasks import make_task
from core.training.build import build_model, load_weights, weight_sizes
from core.training.clipping import clip_and_measure
from core.training.counterfactual import (
    ablation_records,
    checked,
    counterfactual_record,
    lesion_loss,
)
from core.training.history import History
from core.training.optimizers import OPTIMIZER_CLASSES  # torch.optim's, without torch._dynamo
from core.training.resources import check_resources
from core.training.rollback import LastGood
from core.training.schedules import coin_generator, teacher_forcing_ratio

# Held-out evaluation (translation tasks) rides on every EVAL_EVERY-th step's record and on
# the budget's last: it decodes the whole held-out split twice (about 400 sources), which
# costs a few training steps, so not every step.
EVAL_EVERY = 50


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available here; use device 'cpu'")
    return torch.device(name)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _host(parts: dict[str, list[torch.Tensor]]) -> dict[str, list[np.ndarray]]:
    """The [T, *] tensors of ``parts`` as float32 numpy arrays, moved in one copy."""
    flat = [t for ts in parts.values() for t in ts]
    if not flat:
        return {k: [] for k in parts}
    joined = _numpy(torch.cat([t.detach().reshape(t.shape[0], -1).float() for t in flat], dim=1))
    out, col = {}, 0
    for name, ts in parts.items():
        out[name] = []
        for t in ts:
            width = t[0].numel()
            out[name].append(np.ascontiguousarray(joined[:, col:col + width]).reshape(t.shape))
            col += width
    return out
DYNAMICS_BATCH, DYNAMICS_SEED = 31, 4321  # sequences besides the probe whose states dynamics() uses


def _join(a, b):
    """One batch of a's sequences then b's (same T) without targets; the labels stay a's."""
    valid = None
    if a.valid is not None or b.valid is not None:
        valid = torch.cat([a.valid if a.valid is not None else torch.ones(a.x.shape[:2], dtype=torch.bool),
                           b.valid if b.valid is not None else torch.ones(b.x.shape[:2], dtype=torch.bool)], 1)
    lengths = None
    if a.lengths is not None or b.lengths is not None:
        T = a.x.shape[0]
        lengths = torch.cat([a.lengths if a.lengths is not None else torch.full((a.x.shape[1],), T),
                             b.lengths if b.lengths is not None else torch.full((b.x.shape[1],), T)])
    return dataclasses.replace(a, x=torch.cat([a.x, b.x], 1), y=None, valid=valid, lengths=lengths)


def _parts(trace, unmasked, prefix: str = "") -> dict[str, list[torch.Tensor]]:
    """Batch element 0's [T, *] tensors of one direction of a trace, keyed for _host."""
    return {f"{prefix}hidden": [h[:, 0] for h in trace.hidden],
            f"{prefix}cell": [c[:, 0] for c in trace.cell or ()],
            f"{prefix}gates": [v[:, 0] for g in trace.gates for v in g.values()],
            f"{prefix}unmasked": [h[:, 0] for h in (unmasked.hidden if unmasked is not None else ())]}


def _direction(host: dict[str, list[np.ndarray]], trace, unmasked, prefix: str = "") -> tuple:
    """(hidden, cell, gates, unmasked hidden) of one direction from _host's arrays."""
    gates = iter(host[f"{prefix}gates"])
    return (tuple(host[f"{prefix}hidden"]),
            tuple(host[f"{prefix}cell"]) if trace.cell is not None else None,
            tuple({k: next(gates) for k in layer} for layer in trace.gates),
            tuple(host[f"{prefix}unmasked"]) if unmasked is not None else None)


class Trainer:
    """Trains ``experiment`` one step at a time.

    Attributes:
        task: the core.tasks.Task (baseline, target, probe batch).
        model: the task's model; ``model.recurrent`` is the instrumented stack.
        history: per-step scalars (core.history.History), bounded at 8 bytes a value.
    """

    def __init__(self, experiment: Experiment, files: Mapping[str, DataFile] | None = None,
                 weights: Mapping[str, torch.Tensor] | None = None):
        """files: stored copies of the files the experiment reads ({path: DataFile}, from a
        session; read from disk otherwise). weights: initial weights under the model's
        names (an opened model's, core.models.io.LoadedModel.weights()); a subset is fine
        (a head the file lacks stays freshly initialised)."""
        check_resources(experiment)
        self.experiment = experiment
        self.device = str(resolve_device(experiment.device))
        self.files = experiment_files(experiment, files)
        self.task = make_task(experiment, self.files, weight_sizes(weights) if weights else None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(experiment.seed)
            model = build_model(self.task)
            initialise(model.recurrent, experiment.init, experiment.spectral_radius)
            if experiment.cell == "lstm":  # every LSTM stack: a seq2seq model's decoder too
                for stack in model.modules():
                    if getattr(stack, "kind", None) == "lstm" and hasattr(stack, "layer_weights"):
                        set_forget_bias(stack, experiment.forget_bias)
        if weights:
            load_weights(model, weights)
        self.model = model.to(self.device)
        # foreach: a few calls for all parameters instead of ~10 per parameter, each of which
        # takes the GIL that the app's drawing thread needs too.
        self.optimizer = OPTIMIZER_CLASSES[experiment.optimizer](self.model.parameters(), lr=experiment.lr, foreach=True)
        self.generator = torch.Generator().manual_seed(experiment.seed)
        self.step_count = 0
        self.history = History()
        self.last_good = LastGood()  # where a diverged step takes the model back to
        self._probe_batch = None
        self.interventions: tuple = ()  # core.interventions.Intervention, see set_interventions
        self.lesion = False
        self._dynamics_batch = None
        self.dynamics_input = ZERO  # the constant input whose fixed points dynamics() finds

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ----------------------------------------------------------------- training
    def step(self, *, probe: bool = False, gradients: bool = False, spectrum: bool = False,
             dynamics: bool = False) -> StepRecord:
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
        if self.lesion:
            loss, metrics = lesion_loss(self.model, batch, self.interventions, exp.tbptt)
        elif self.task.model_kind == "seq2seq":
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
        if probe or gradients or spectrum or dynamics:
            record = dataclasses.replace(
                record,
                probe=self.probe() if probe else None,
                gradients=self.gradients() if gradients else None,
                spectrum=self.spectrum() if spectrum else None,
                dynamics=self.dynamics() if dynamics else None,
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

    def use_probe(self, text: str) -> None:
        """Show typed input from now on: text through the task's vocabulary, or numbers (rows
        split by ';', values by ',', or the path of a CSV: a header row, then one row per
        time step); "" goes back to the task's own probe. Raises UserError (nothing
        changed) when the input does not fit the task."""
        from core.tasks.typed import encode_probe, parse_rows

        experiment = self.experiment.replace(probe=text)
        reads_text = any(getattr(self.task, name, None) is not None for name in ("coder", "vocab", "src_vocab"))
        batch = None
        if text.lower().endswith(".csv") and not reads_text:  # a file of input rows, one per time step
            from core.datafiles import read_file
            from core.tasks.files import parse_series

            series = parse_series(read_file(text), min_rows=1)
            batch = encode_probe(self.task, rows=[[row[k] for k in series.inputs] for row in series.values])
        elif text:  # encoded first: a refusal leaves everything as it was
            batch = encode_probe(self.task, text=text) if reads_text else encode_probe(self.task, rows=parse_rows(text))
        self.experiment = self.task.exp = experiment
        self.set_probe_batch(batch if batch is not None else self.task.probe_batch())

    def set_probe_batch(self, batch) -> None:
        """Show ``batch`` (one sequence, e.g. core.tasks.user.encode_probe of typed text)
        instead of the task's probe from now on; the next probe and gradients use it."""
        self._probe_batch = batch.to(self.device)

    def probe(self) -> ProbeRecord:
        """Hidden states and gates on the probe sequence (batch element 0)."""
        batch = self.probe_batch()
        self.model.eval()
        trace = self.model.trace(batch)
        valid = batch.valid[:, 0] if batch.valid is not None else torch.ones(batch.x.shape[0], dtype=torch.bool)
        unmasked = None
        if batch.valid is not None and not bool(batch.valid.all()):
            unmasked = self.model.trace(batch, masking=False)
        # Every [T, *] array of batch element 0 in one copy to the host (on a GPU, one
        # transfer per frame instead of one per gate and layer).
        parts = {"inputs": [batch.x[:, 0]], **_parts(trace, unmasked)}
        if trace.reverse is not None:
            parts.update(_parts(trace.reverse, None if unmasked is None else unmasked.reverse, "reverse_"))
        host = _host(parts)
        hidden, cell, gates, unmasked_hidden = _direction(host, trace, unmasked)
        backward = None
        if trace.reverse is not None:
            backward = ProbeDirection(*_direction(host, trace.reverse, unmasked, "reverse_"))
        return ProbeRecord(
            step=self.step_count,
            kind=trace.kind,
            labels=batch.labels,
            inputs=host["inputs"][0],
            valid=valid.cpu().numpy().copy(),
            hidden=hidden,
            cell=cell,
            gates=gates,
            unmasked_hidden=unmasked_hidden,
            backward=backward,
        )

    def gradients(self) -> GradientRecord | None:
        """||dL/dh_t|| through time on the probe batch (None for translation tasks)."""
        if not hasattr(self.model, "loss_from_outputs"):
            return None
        return gradient_record(self.model, self.probe_batch(), self.step_count, self.experiment.tbptt)

    def spectrum(self) -> SpectrumRecord:
        return spectrum_record(self.model.recurrent, self.step_count)

    def dynamics_batch(self):
        """The probe, then DYNAMICS_BATCH more sequences (fixed: the same every time)."""
        if self._dynamics_batch is None:
            probe = self.task.probe_batch()
            sample = getattr(self.task, "dynamics_sample", self.task.sample)  # an opened model has no data
            more = sample(DYNAMICS_BATCH, torch.Generator().manual_seed(DYNAMICS_SEED))
            self._dynamics_batch = _join(probe, more).to(self.device)
        return self._dynamics_batch

    def recurrent_inputs(self, batch) -> torch.Tensor:
        """[T, B, I] what the recurrent stack reads for ``batch`` (embedded, if the model embeds)."""
        inputs = getattr(self.model, "inputs", None)
        return inputs(batch) if inputs is not None else batch.x

    def input_symbols(self) -> dict[str, np.ndarray]:
        """The task's input symbols as the probe shows them, as the recurrent stack reads
        them (core.instruments.dynamics)."""
        probe = self.probe_batch()
        return input_symbols(probe.labels, _numpy(self.recurrent_inputs(probe)[:, 0]))

    def choose_dynamics_input(self, name: str) -> None:
        """Find fixed points under ``name`` ("zero", a symbol, or numbers) from now on;
        ValueError naming the value and the choices when it is none of them."""
        parse_input(name, self.input_symbols(), self.model.recurrent.input_size)
        self.dynamics_input = str(name).strip()

    def dynamics(self, settings=None) -> DynamicsRecord | None:
        """Trajectories in PC space and the fixed points under ``dynamics_input`` (None for
        encoder-decoder models)."""
        if not hasattr(self.model, "loss_from_outputs"):
            return None
        batch = self.dynamics_batch()
        self.model.eval()
        trace = self.model.trace(batch)
        states = stack_states(trace.hidden, trace.cell)
        extra = {} if settings is None else {"settings": settings}
        with torch.no_grad():
            x = self.recurrent_inputs(batch)
        return dynamics_record(self.model.recurrent, states, batch.valid, x, batch.labels,
                               self.step_count, self.dynamics_input, self.input_symbols(), **extra)

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics when the task defines them (translation: exact match)."""
        evaluate = getattr(self.task, "evaluate", None)
        return evaluate(self.model) if evaluate else {}

    # ----------------------------------------------------------- interventions
    def set_interventions(self, edits, lesion: bool = False) -> None:
        """Keep ``edits`` (core.interventions.Intervention; the enabled ones apply) for the
        counterfactual probe and, with ``lesion``, for training too. All are checked against
        the model and the probe first: on InterventionError nothing changes."""
        edits = checked(self.model, self.probe_batch(), edits) if edits else ()
        self.interventions = edits
        self.lesion = bool(lesion) and any(e.enabled for e in edits)

    def counterfactual(self) -> CounterfactualRecord | None:
        """The probe as it is and with the enabled interventions (None when none is on)."""
        if not any(e.enabled for e in self.interventions):
            return None
        return counterfactual_record(self.model, self.probe_batch(), self.interventions, self.step_count,
                                     lesion=self.lesion, truncate=self.experiment.tbptt)

    def ablation(self, layers: tuple[int, ...] | None = None, method: str = "exact") -> tuple[AblationRecord, ...]:
        """Each hidden unit zeroed in turn over the probe: the change in probe loss, per layer
        (``method`` "first-order": its linear estimate, from one forward and backward)."""
        return ablation_records(self.model, self.probe_batch(), self.step_count, layers, method)
