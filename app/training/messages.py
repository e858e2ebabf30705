"""What crosses the pipe between the window and a child process: typed, frozen messages.

One dataclass per command (window -> process) and per reply (process -> window); both
sides dispatch on the type (``app.training.child.ChildLoop`` and
``app.training.controller.ProcessLink``), so the protocol is this file, not a docstring.
Everything here is plain data that pickles (spawned processes share nothing else). No Qt.

Training process (app.training.loop)::

    window -> Build(source: Experiment | SessionFile | ModelFile) Step(count) Run() Pause() SetSpeed(steps_per_second)
              Request(instruments) Measure(instruments) AttachAlways(instruments) Call(job_id, fn)
              Delivered() Shutdown()
    window <- Built(info, past) Records(records) StateChanged(state) Failed(failure)
              JobDone(job_id, value, failure)

Comparison process (app.training.compare)::

    window -> StartComparison(experiment, steps, generation) StopComparison() Delivered() Shutdown()
    window <- ComparisonBegan(generation, infos) Records(records, generation)
              ComparisonEnded(generation, how)

A comparison's replies carry the ``generation`` of the StartComparison they answer, so the
window can drop what a comparison it has abandoned still had in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Experiment
from core.names import GATES

INSTRUMENTS = ("probe", "gradients", "spectrum", "counterfactual", "dynamics")


# -- plain data carried by the messages ------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """What the panels need to know about a freshly built trainer."""

    experiment: Experiment
    task_name: str
    task_title: str
    baseline: float | None
    baseline_label: str
    target: float | None
    param_count: int
    device: str
    step: int
    data: dict = field(default_factory=dict)  # what the task read from the user's file (rows, normalisation)
    interventions: tuple[Any, ...] = ()  # core.interventions.Intervention, as the trainer keeps them
    lesion: bool = False  # they also apply while training

    @property
    def kind(self) -> str:
        return self.experiment.cell

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.experiment.cell]

    @property
    def num_layers(self) -> int:
        return self.experiment.num_layers


@dataclass(frozen=True)
class SessionFile:
    """A saved session to build from (instead of an Experiment)."""

    path: Path


@dataclass(frozen=True)
class ModelFile:
    """A user's trained torch.nn model to build from (core.training.opened.opened_trainer):
    one recurrent stack (``prefix``), optional embedding and head keys ("auto", a key, or
    None), a vocabulary file, and the ``experiment`` whose data, if any, it fine-tunes on."""

    path: Path
    experiment: Experiment
    prefix: str | None = None
    embedding: str | None = "auto"
    head: str | None = "auto"
    vocab: str | None = None
    nonlinearity: str | None = None


@dataclass(frozen=True)
class Failure:
    """A message for the user; ``field`` names the experiment field at fault, if any;
    ``details``, for an unexpected error (a bug, not bad input), is its traceback."""

    message: str
    field: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class Unavailable:
    """A record in place of an instrument's record that could not be made at ``step``:
    ``reason`` says why, in a few words ("not computed for sequence-to-sequence tasks", or
    the error). The panels that show the instrument say so instead of showing old data."""

    step: int
    instrument: str
    reason: str


@dataclass(frozen=True)
class JobResult:
    """What a job returned (``value``), or why it failed (``failure``)."""

    value: Any = None
    failure: Failure | None = None


# -- commands: window -> process -------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """Replace the trainer with one for ``source`` (an Experiment or a SessionFile)."""

    source: Experiment | SessionFile


@dataclass(frozen=True)
class Step:
    """Run ``count`` training steps as fast as possible (pauses a run first)."""

    count: int


@dataclass(frozen=True)
class Run:
    """Train until paused (or until the experiment's step budget)."""


@dataclass(frozen=True)
class Pause:
    """Stop after the step in progress."""


@dataclass(frozen=True)
class SetSpeed:
    """Limit a run to this many steps per second; 0 means as fast as possible."""

    steps_per_second: float


@dataclass(frozen=True)
class Request:
    """Attach these instruments (names from INSTRUMENTS) to the next step."""

    instruments: tuple[str, ...]


@dataclass(frozen=True)
class Measure:
    """Compute these instruments now, for the model as it is between two steps, and send
    them as lone records (an ``Unavailable`` for each that cannot be made). The window asks
    after a pause, so every panel shows the step the run stopped at."""

    instruments: tuple[str, ...]


@dataclass(frozen=True)
class AttachAlways:
    """Attach these instruments to every step, whatever they cost (stress tests, benchmarks)."""

    instruments: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """Run ``fn(trainer)`` between steps; the answer is JobDone with the same ``job_id``."""

    job_id: int
    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class Delivered:
    """The window took one Records message (back-pressure: see ChildLoop.emit_records)."""


@dataclass(frozen=True)
class Shutdown:
    """End the process."""


@dataclass(frozen=True)
class StartComparison:
    """Compare rnn, lstm and gru on ``experiment`` for ``steps`` steps each."""

    experiment: Experiment
    steps: int
    generation: int = 0


@dataclass(frozen=True)
class StopComparison:
    """End the comparison after the update in progress."""


# -- replies: process -> window --------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    """A trainer was built; ``past`` holds a reopened session's StepRecords (else empty)."""

    info: RunInfo
    past: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Records:
    """Records in the order they were made (StepRecords, or lone instrument records; a
    comparison's CompareRecords, with its generation)."""

    records: tuple[Any, ...]
    generation: int = 0


@dataclass(frozen=True)
class StateChanged:
    """The loop's state: idle, running, paused or diverged."""

    state: str


@dataclass(frozen=True)
class Failed:
    """Something the user asked for failed (or a bug, with ``failure.details``)."""

    failure: Failure


@dataclass(frozen=True)
class JobDone:
    """The answer to ``Call(job_id, ...)``."""

    job_id: int
    result: JobResult


@dataclass(frozen=True)
class ComparisonBegan:
    """The comparison's trainers are built: one core.training.compare.KindInfo each."""

    generation: int
    infos: tuple[Any, ...]


@dataclass(frozen=True)
class ComparisonEnded:
    """The comparison ended: "done", "stopped", or the failure message."""

    generation: int
    how: str
