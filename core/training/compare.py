"""RNN vs LSTM vs GRU: the same experiment and seed, one trainer per cell kind, side by side.

The three trainers are built from ``experiment.replace(cell=kind)`` and stepped round-robin
(rnn, lstm, gru, rnn, ...), so they see the same background load and finish together. What
comes out is plain data: a :class:`KindInfo` per kind first, then one :class:`CompareRecord`
per optimiser update; each kind's last record carries its gradients through time
(``Trainer.gradients()``: ``||dL/dh_t||`` on the probe batch). No Qt here; the app runs
:meth:`Comparison.run` in a child process (app.training.compare) and summarises with :func:`summarize`.

Each trainer is exactly the one a user would get by choosing that cell kind alone: same
seed, same batches (the batch generator is seeded by the experiment), same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import Experiment
from core.names import CELL_KINDS
from core.records import GradientRecord

FINAL_WINDOW = 10  # "final loss" and "steps to target" read the mean of this many steps


@dataclass(frozen=True)
class KindInfo:
    """What one kind's model is: its cell, parameter count, and the task's reference losses."""

    kind: str
    param_count: int
    target: float | None
    baseline: float | None


@dataclass(frozen=True)
class CompareRecord:
    """One optimiser update of one kind.

    loss: training loss of the step's batch; seconds: wall time of the update;
    diverged: the update was refused (non-finite loss or gradient);
    gradients: ``Trainer.gradients()`` after this kind's last step, else None.
    """

    kind: str
    step: int
    loss: float
    seconds: float
    diverged: bool
    gradients: GradientRecord | None = None


@dataclass(frozen=True)
class CompareRow:
    """One row of the comparison table (see :func:`summarize`)."""

    kind: str
    param_count: int
    steps: int
    seconds_per_step: float  # median wall time of an update (s)
    final_loss: float  # mean loss of the last FINAL_WINDOW steps
    steps_to_target: int | None  # first step whose FINAL_WINDOW-step mean loss <= target


def default_make_trainer(experiment: Experiment) -> Any:
    from core.training.trainer import Trainer

    return Trainer(experiment)


class Comparison:
    """Three trainers (one per kind in ``kinds``) on ``experiment`` with its seed.

    Args:
        experiment: the shared experiment; only ``cell`` differs between the trainers.
        kinds: cell kinds to compare, in the order they step and are listed.
        make_trainer: builds a trainer from an experiment (core.trainer.Trainer by default).
    """

    def __init__(self, experiment: Experiment, kinds: Sequence[str] = CELL_KINDS,
                 make_trainer: Callable[[Experiment], Any] | None = None):
        unknown = [k for k in kinds if k not in CELL_KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty selection of {', '.join(CELL_KINDS)}; got {list(kinds)}")
        make = make_trainer or default_make_trainer
        self.experiment = experiment
        self.trainers = {kind: make(experiment.replace(cell=kind)) for kind in kinds}

    def infos(self) -> list[KindInfo]:
        out = []
        for kind, trainer in self.trainers.items():
            target = getattr(trainer.task, "target", None)
            baseline = getattr(trainer.task, "baseline", None)
            out.append(KindInfo(kind, int(trainer.param_count), None if target is None else float(target),
                                None if baseline is None else float(baseline)))
        return out

    def run(self, steps: int, stop: Callable[[], bool] | None = None) -> Iterator[CompareRecord]:
        """Step every kind ``steps`` times, round-robin; yield a record per update.

        ``stop()`` is checked before each update: when it returns True, every kind still
        gets its gradients record and the run ends. A kind that diverges stops stepping (its
        last record carries its gradients) while the others go on.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        live = list(self.trainers)
        for i in range(steps):
            for kind in list(live):
                if stop is not None and stop():
                    yield from self._finish(live)
                    return
                record = self.trainers[kind].step()
                last = i == steps - 1 or record.diverged
                yield CompareRecord(kind, record.step, record.loss, record.seconds, record.diverged,
                                    self.trainers[kind].gradients() if last else None)
                if record.diverged:
                    live.remove(kind)

    def _finish(self, live: list[str]) -> Iterator[CompareRecord]:
        """A closing record per live kind, repeating its last step, with its gradients."""
        for kind in live:
            trainer = self.trainers[kind]
            loss = float(trainer.history.column("loss")[-1]) if trainer.step_count else math.nan
            yield CompareRecord(kind, trainer.step_count, loss, 0.0, False, trainer.gradients())


def steps_to_target(steps: np.ndarray, losses: np.ndarray, target: float | None,
                    window: int = FINAL_WINDOW) -> int | None:
    """The first step at which the mean of the last ``window`` losses is <= ``target``.

    A single lucky batch does not count: the mean damps batch noise. None when never reached
    (or when the task has no target). ``steps`` and ``losses`` are [N], in step order.
    """
    if target is None or len(losses) < window:
        return None
    means = np.convolve(np.asarray(losses, dtype=np.float64), np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(means <= target)
    return int(steps[window - 1 + hit[0]]) if hit.size else None


def summarize(infos: Sequence[KindInfo], records: Sequence[CompareRecord]) -> list[CompareRow]:
    """The comparison table: one row per kind, in the order of ``infos``.

    Closing records (``seconds == 0``, see ``Comparison.run``) repeat a step and are ignored.
    """
    rows = []
    for info in infos:
        mine = [r for r in records if r.kind == info.kind and r.seconds > 0 and not r.diverged]
        steps = np.array([r.step for r in mine], dtype=np.int64)
        losses = np.array([r.loss for r in mine], dtype=np.float64)
        seconds = np.array([r.seconds for r in mine], dtype=np.float64)
        rows.append(CompareRow(
            kind=info.kind, param_count=info.param_count, steps=int(steps[-1]) if len(steps) else 0,
            seconds_per_step=float(np.median(seconds)) if len(seconds) else math.nan,
            final_loss=float(losses[-FINAL_WINDOW:].mean()) if len(losses) else math.nan,
            steps_to_target=steps_to_target(steps, losses, info.target),
        ))
    return rows


def running_mean(values: np.ndarray, window: int = FINAL_WINDOW) -> np.ndarray:
    """[N] mean of the last ``window`` values at each point (fewer at the start): the trend
    under the batch noise, as the loss curves draw it."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    sums = np.cumsum(values)
    out = sums.copy()
    out[window:] = sums[window:] - sums[:-window]
    return out / np.minimum(np.arange(1, values.size + 1), window)
