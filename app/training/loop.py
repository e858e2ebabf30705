"""Training in a process of its own: the loop that owns the trainer and sends plain records.

Why a process and not a thread: a training step and a redraw both run Python code, and in
one process they take turns at the GIL. On 2 cores a window drawing ~30 frames a second
slowed training to 0.55-0.75 of its headless speed however the frames were spaced; in a
process of its own the trainer keeps a core to itself, and closing the window can always
end it within 2 s (a process can be stopped mid-step, a thread cannot).

This module imports no Qt (the child process never loads it). ``make_loop`` is what
``app.training.child.serve`` builds in the child; ``app.training.controller.TrainingController``
is the window's face that starts the process, sends commands and turns what comes back
into Qt signals. The commands and replies are the typed messages of app.training.messages.

The loop trains in ticks of at most TICK_SECONDS and reads commands between ticks; within a
tick it checks a shared stop event between steps, so Pause takes effect after at most one
step. Instrumentation is on request: the GUI asks for a probe, gradients through time or a
spectrum when its next frame will show them, and the loop attaches them to the next step
only, each kept to a share of the run's time (INSTRUMENT_SHARE). Records go out with the
back-pressure of app.training.child.ChildLoop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from app.training.child import ChildLoop
from app.training.engine import build_trainer, history_records, run_info
from app.training.messages import (
    INSTRUMENTS,
    AttachAlways,
    Build,
    Built,
    Call,
    Failure,
    JobDone,
    JobResult,
    Measure,
    Pause,
    Request,
    Run,
    SetSpeed,
    StateChanged,
    Step,
    Unavailable,
)

log = logging.getLogger("rnn_explorer.app")

TICK_SECONDS = 1 / 30  # at full speed, send at most this often (the window redraws at ~30 Hz)
# Most of the wall time an instrument may take while training runs (see _attachments).
INSTRUMENT_SHARE = {"probe": 0.05, "gradients": 0.05, "spectrum": 0.03, "counterfactual": 0.05, "dynamics": 0.03}
NOT_FOR_THIS_TASK = "not computed for this task"


def leave_a_core_for_the_gui() -> None:
    """Let torch use every core but one, so the window can always draw.

    torch's intra-op pool defaults to every core; with the GUI busy on one of them, the
    pool's threads wait on each other and a training step gets slower, not faster
    (measured on 2 cores: 1 thread ~8 ms/step, 2 threads 68-400 ms/step for adding-lstm
    while drawing).
    """
    import torch

    cores = max((os.cpu_count() or 2) - 1, 1)
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


TRAINING_PROCESS = "rnn-explorer-training"


def training_loop(make_trainer: Callable[[Any], Any] | None = None) -> Callable[..., TrainingLoop]:
    """What the training process runs: ``app.training.child.spawn(training_loop(),
    TRAINING_PROCESS)`` starts one before the window's process imports Qt (app.cli.gui)."""
    return functools.partial(TrainingLoop, make_trainer=make_trainer)


class TrainingLoop(ChildLoop):
    """Steps a trainer between commands (``make_trainer(source)`` builds one; the default
    builds from an Experiment or a SessionFile)."""

    def __init__(self, send: Callable[[Any], None], stop: Any,
                 make_trainer: Callable[[Any], Any] | None = None):
        super().__init__(send, stop)
        # This process always needs torch: load it now, while the window's process imports
        # Qt and makes its widgets, not when the first Build arrives.
        import core.training.trainer  # noqa: F401
        self._make_trainer = make_trainer or build_trainer
        self._trainer: Any = None
        self._wanted: set[str] = set()
        self._attach_always: frozenset[str] = frozenset()  # stress tests and benchmarks
        self._running = False
        self._pending = 0
        self._interval = 0.0  # seconds between paced steps; 0 = as fast as possible
        self._budget = 0  # the experiment's step budget: a run pauses when it gets there
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)  # seconds each instrument took last time
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))  # when it last finished

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Build: self._on_build, Step: self._on_step, Run: self._on_run, Pause: self._on_pause,
                SetSpeed: self._on_speed, Request: self._on_request, Measure: self._on_measure,
                AttachAlways: self._on_attach_always, Call: self._on_call}

    # -- commands -------------------------------------------------------------------------------
    def _on_build(self, command: Build) -> None:
        """Replace the trainer with one for the source; keep the old one if that fails."""
        self._halt()
        self._stop.clear()  # a stop asked for before this command is spent
        leave_a_core_for_the_gui()
        try:
            trainer = self._make_trainer(command.source)
        except Exception as err:  # shown to the user at the boundary, never swallowed
            self.report(err, "building the experiment")
            return
        self._trainer = trainer
        self._budget = int(getattr(trainer.experiment, "steps", 0))
        self._wanted.clear()
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))
        # With a reopened session's past (StepRecords), which the panels show as if they had watched it.
        self.send(Built(run_info(trainer), tuple(history_records(trainer.history))))
        self._snapshot()
        self._set_state("idle")

    def _on_step(self, command: Step) -> None:
        """Queue ``count`` training steps, run as fast as possible; pauses a run first."""
        if self._trainer is None or command.count < 1:
            return
        self._running = False
        self._pending += command.count
        self.schedule(0.0)

    def _on_run(self, _: Run) -> None:
        if self._trainer is None:
            return
        self._running = True
        self._set_state("running")
        self.schedule(self._interval)

    def _on_pause(self, _: Pause) -> None:
        was_busy = self._running or self._pending
        self._halt()
        if was_busy:
            self._set_state("paused")

    def _on_speed(self, command: SetSpeed) -> None:
        rate = command.steps_per_second
        self._interval = 0.0 if rate <= 0 else max(0.001, 1.0 / rate)

    def _on_request(self, command: Request) -> None:
        """Attach these instruments to the next step (or the last of a queued batch)."""
        self._wanted.update(command.instruments)

    def _on_measure(self, command: Measure) -> None:
        """The asked instruments for the model as it is now, as lone records."""
        if self._trainer is None:
            return
        records = [self._measure(name) for name in INSTRUMENTS if name in command.instruments]
        self.emit_records([r for r in records if r is not None])

    def _on_attach_always(self, command: AttachAlways) -> None:
        self._attach_always = frozenset(command.instruments)

    def _on_call(self, command: Call) -> None:
        """Run ``fn(trainer)`` here, where no step can change the model meanwhile (e.g.
        decoding), and send its value; failures come back in the reply, not as Failed."""
        from core.errors import UserError

        value, failure = None, None
        try:
            if self._trainer is None:
                raise UserError("there is no model yet: build an experiment first")
            value = command.fn(self._trainer)
        except Exception as err:  # shown by whoever asked, never swallowed
            expected = isinstance(err, (UserError, ValueError))
            if not expected:
                log.exception("training job failed")
            failure = Failure(str(err) if expected else f"{type(err).__name__}: {err}", getattr(err, "field", None))
        try:
            self.send(JobDone(command.job_id, JobResult(value, failure)))
        except Exception as err:  # e.g. a value that cannot be pickled: a bug, said as such
            log.exception("training job result could not be sent")
            self.send(JobDone(command.job_id, JobResult(None, Failure(f"{type(err).__name__}: {err}"))))

    def on_shutdown(self) -> None:
        self._halt()
        self._trainer = None

    # -- internals ------------------------------------------------------------------------------
    def _halt(self) -> None:
        self._running = False
        self._pending = 0
        self.unschedule()

    def tick(self) -> None:
        if self.stalled:
            self.schedule(0.005)
            return
        records: list[Any] = []
        deadline = time.perf_counter() + TICK_SECONDS
        paced = self._interval > 0 and not self._pending
        diverged = failed = False
        try:
            while not self._stop.is_set() and (self._running or self._pending):
                made = self._instrumented_step()
                records.extend(made)
                record = made[0]
                self._pending = max(self._pending - 1, 0)
                if record.diverged:
                    self._halt()
                    diverged = True
                    break
                if self._running and record.step == self._budget:
                    self._running = False  # the budget is reached; Run again continues past it
                    break
                if paced or time.perf_counter() > deadline:
                    break
        except Exception as err:
            self._halt()
            failed = True
            self.report(err, "training")
        if records:  # records first, so the window has them when the state changes
            self.emit_records(records)
        if diverged:
            self._set_state("diverged")
        elif self._stop.is_set():
            return
        elif self._pending:
            self.schedule(0.0)
        elif self._running:
            self.schedule(self._interval)
        elif records or failed:
            self._set_state("paused")

    def _attachments(self) -> list[str]:
        """Which instruments the coming step carries; consumes the requests it serves.

        While running, each instrument keeps to its share of wall time (INSTRUMENT_SHARE,
        from its last measured cost): gradients through time on a big model can cost more
        than many training steps, and showing them must not stall training. A request
        that must wait stays pending. A manual Step gets everything asked for.
        """
        if self._pending > 1 and not self._running:
            return []  # only the last of a batch is shown
        now = time.perf_counter()
        chosen = []
        for name in INSTRUMENTS:
            forced = name in self._attach_always
            if not (name in self._wanted or forced):
                continue
            rest = self._cost[name] * (1.0 / INSTRUMENT_SHARE[name] - 1.0)
            if self._running and not forced and now - self._done[name] < rest:
                continue
            self._wanted.discard(name)
            chosen.append(name)
        return chosen

    def _instrumented_step(self) -> list[Any]:
        """One training step, then the chosen instruments, each timed for its budget: the
        StepRecord carries them, followed by an Unavailable for each that failed."""
        chosen = self._attachments()
        record = self._trainer.step()
        extras, missing = {}, []
        for name in chosen:
            if self._stop.is_set():
                break
            value = self._measure(name)
            if isinstance(value, Unavailable):
                missing.append(value)
            elif value is not None:
                extras[name] = value
        return [dataclasses.replace(record, **extras) if extras else record, *missing]

    def _measure(self, name: str) -> Any:
        """``trainer.probe()`` / ``gradients()`` / ``spectrum()`` / ``dynamics()`` / ...,
        remembering its cost; an Unavailable when the task has none of probe, gradients or
        spectrum, or when it fails (None: an optional instrument with nothing to show, e.g. no
        what-if set). An instrument looks at the model and must never stop its training: a
        failure is logged, said in the panel, and the run goes on."""
        start = time.perf_counter()
        step = self._trainer.step_count
        try:
            value = getattr(self._trainer, name)()
        except Exception as err:
            log.exception("%s failed at step %d; training goes on", name, step)
            value = Unavailable(step, name, f"{type(err).__name__}: {err}")
        self._done[name] = time.perf_counter()
        self._cost[name] = self._done[name] - start
        if value is None and name in ("probe", "gradients", "spectrum"):
            return Unavailable(step, name, NOT_FOR_THIS_TASK)
        return value

    def _snapshot(self) -> None:
        """The new model's state before any step: cheap instruments first, so the panels
        fill at once; gradients through time (the costly one) in a second list."""
        first = [self._measure("probe"), self._measure("spectrum"), self._measure("counterfactual")]
        self.emit_records([r for r in first if r is not None])
        if not self._stop.is_set():
            self.emit_records([self._measure("gradients")])

    def _set_state(self, state: str) -> None:
        self.send(StateChanged(state))
