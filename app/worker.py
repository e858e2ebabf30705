"""Training in a process of its own: the loop that owns the trainer and sends plain records.

Why a process and not a thread: a training step and a redraw both run Python code, and in
one process they take turns at the GIL. On 2 cores a window drawing ~30 frames a second
slowed training to 0.55-0.75 of its headless speed however the frames were spaced; in a
process of its own the trainer keeps a core to itself, and closing the window can always
end it within 2 s (a process can be stopped mid-step, a thread cannot).

This module imports no Qt (the child process never loads it). ``serve`` is the child's
entry point; ``app.controller.TrainingController`` is the GUI-side face that starts the
process, sends commands and turns what comes back into Qt signals.

Commands arrive as tuples on one pipe, replies leave on another (see ``TrainingLoop``):

* in: ``("build", source)``, ``("step", n)``, ``("run",)``, ``("pause",)``, ``("speed", s)``,
  ``("request", kinds)``, ``("attach_always", kinds)``, ``("call", job_id, fn)``,
  ``("delivered",)``, ``("shutdown",)``;
* out: ``("built", RunInfo, [past StepRecords])``, ``("records", [records])``, ``("state", name)``,
  ``("failed", Failure)``, ``("job", job_id, value, Failure | None)``.

The loop trains in ticks of at most TICK_SECONDS and reads commands between ticks; within a
tick it checks a shared stop event between steps, so Pause takes effect after at most one
step. Instrumentation is on request: the GUI asks for a probe, gradients through time or a
spectrum when its next frame will show them, and the loop attaches them to the next step
only, each kept to a share of the run's time (INSTRUMENT_SHARE). At most MAX_UNDELIVERED
record lists are unacknowledged at a time; later records wait in one list until the GUI
has taken the earlier ones, so a busy GUI gets bigger lists, not a queue, and training
does not wait for it (unless it stalls for MAX_KEPT records).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app.engine import build_trainer, history_records, run_info

log = logging.getLogger("rnn_explorer.app")

INSTRUMENTS = ("probe", "gradients", "spectrum")
TICK_SECONDS = 1 / 30  # at full speed, send at most this often (the GUI redraws at ~30 Hz)
# Most of the wall time an instrument may take while training runs (see _attachments).
INSTRUMENT_SHARE = {"probe": 0.05, "gradients": 0.05, "spectrum": 0.03}
MAX_UNDELIVERED = 2  # record lists in flight to the GUI; later records wait in one list
MAX_KEPT = 10_000  # records waiting for a stalled GUI before training waits too


@dataclass(frozen=True)
class Failure:
    """A message for the user; ``field`` names the experiment field at fault, if any;
    ``details``, for an unexpected error (a bug, not bad input), is its traceback."""

    message: str
    field: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What a job returned (``value``), or why it failed (``failure``); ``tag`` is the
    caller's (it never leaves the GUI process)."""

    tag: Any
    value: Any = None
    failure: Failure | None = None


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


def serve(commands: Any, events: Any, stop: Any, make_trainer: Callable[[Any], Any] | None,
          verbose: bool = False) -> None:
    """The training process: read ``commands`` until shutdown (or until the GUI is gone)."""
    import signal

    from core.logs import setup_logging

    # Ctrl+C in a terminal reaches every process of the app: the window's process handles
    # it (and then ends this one); here it would only interrupt a step with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(verbose)
    loop = TrainingLoop(events.send, stop, make_trainer)
    try:
        loop.serve(commands)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the window's process ended without saying so: nothing is left to serve


class TrainingLoop:
    """Steps a trainer between commands. ``send`` takes one reply tuple; ``stop`` is an
    event the GUI sets to end the current tick after the step in progress."""

    def __init__(self, send: Callable[[tuple], None], stop: Any,
                 make_trainer: Callable[[Any], Any] | None = None):
        self._send = send
        self._stop = stop
        self._make_trainer = make_trainer or build_trainer
        self._trainer: Any = None
        self._wanted: set[str] = set()
        self._attach_always: frozenset[str] = frozenset()  # stress tests and benchmarks
        self._running = False
        self._pending = 0
        self._interval = 0.0  # seconds between paced steps; 0 = as fast as possible
        self._due: float | None = None  # when the next tick is due (None: idle)
        self._budget = 0  # the experiment's step budget: a run pauses when it gets there
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)  # seconds each instrument took last time
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))  # when it last finished
        self._undelivered = 0  # record lists sent but not yet acknowledged by the GUI
        self._outbox: list[Any] = []  # records kept back while the GUI is behind
        self._closed = False

    def serve(self, commands: Any) -> None:
        """Handle commands as they come and tick when a tick is due, until shutdown."""
        while not self._closed:
            wait = None if self._due is None else max(self._due - time.perf_counter(), 0.0)
            if commands.poll(wait):
                self.handle(commands.recv())
            else:
                self._due = None
                self._tick()

    def handle(self, message: tuple) -> None:
        name, *args = message
        getattr(self, f"_on_{name}")(*args)

    # -- commands -------------------------------------------------------------------------------
    def _on_build(self, source: Any) -> None:
        """Replace the trainer with one for ``source``; keep the old one if that fails."""
        self._halt()
        self._stop.clear()  # a stop asked for before this command is spent
        leave_a_core_for_the_gui()
        try:
            trainer = self._make_trainer(source)
        except Exception as err:  # shown to the user at the boundary, never swallowed
            self._report(err, "building the experiment")
            return
        self._trainer = trainer
        self._budget = int(getattr(trainer.experiment, "steps", 0))
        self._wanted.clear()
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))
        # With a reopened session's past (StepRecords), which the panels show as if they had watched it.
        self._send(("built", run_info(trainer), history_records(trainer.history)))
        self._snapshot()
        self._set_state("idle")

    def _on_step(self, count: int) -> None:
        """Queue ``count`` training steps, run as fast as possible; pauses a run first."""
        if self._trainer is None or count < 1:
            return
        self._running = False
        self._pending += count
        self._schedule(0.0)

    def _on_run(self) -> None:
        if self._trainer is None:
            return
        self._running = True
        self._set_state("running")
        self._schedule(self._interval)

    def _on_pause(self) -> None:
        was_busy = self._running or self._pending
        self._halt()
        if was_busy:
            self._set_state("paused")

    def _on_speed(self, steps_per_second: float) -> None:
        """Limit the run to this many steps per second; 0 means as fast as possible."""
        self._interval = 0.0 if steps_per_second <= 0 else max(0.001, 1.0 / steps_per_second)

    def _on_request(self, kinds: Iterable[str]) -> None:
        """Attach these instruments to the next step (or the last of a queued batch)."""
        self._wanted.update(kinds)

    def _on_attach_always(self, kinds: Iterable[str]) -> None:
        self._attach_always = frozenset(kinds)

    def _on_call(self, job_id: int, fn: Callable[[Any], Any]) -> None:
        """Run ``fn(trainer)`` here, where no step can change the model meanwhile (e.g.
        decoding), and send its value; failures come back in the reply, not as ``failed``."""
        from core.errors import UserError

        value, failure = None, None
        try:
            if self._trainer is None:
                raise UserError("there is no model yet: build an experiment first")
            value = fn(self._trainer)
        except Exception as err:  # shown by whoever asked, never swallowed
            expected = isinstance(err, (UserError, ValueError))
            if not expected:
                log.exception("worker job failed")
            failure = Failure(str(err) if expected else f"{type(err).__name__}: {err}", getattr(err, "field", None))
        try:
            self._send(("job", job_id, value, failure))
        except Exception as err:  # e.g. a value that cannot be pickled: a bug, said as such
            log.exception("worker job result could not be sent")
            self._send(("job", job_id, None, Failure(f"{type(err).__name__}: {err}")))

    def _on_delivered(self) -> None:
        """The GUI took one list of records: send the ones kept back, if it has none left."""
        self._undelivered = max(self._undelivered - 1, 0)
        if not self._undelivered and self._outbox:
            kept, self._outbox = self._outbox, []
            self._undelivered = 1
            self._send(("records", kept))

    def _on_shutdown(self) -> None:
        self._halt()
        self._trainer = None
        self._closed = True

    # -- internals ------------------------------------------------------------------------------
    def _halt(self) -> None:
        self._running = False
        self._pending = 0
        self._due = None

    def _schedule(self, delay: float) -> None:
        self._stop.clear()
        self._due = time.perf_counter() + delay

    def _emit_records(self, records: list[Any]) -> None:
        """Send ``records`` now, or keep them for later when the GUI is behind."""
        self._outbox.extend(records)
        if self._undelivered >= MAX_UNDELIVERED:
            return
        records, self._outbox = self._outbox, []
        self._undelivered += 1
        self._send(("records", records))

    def _tick(self) -> None:
        if len(self._outbox) >= MAX_KEPT:  # the GUI has stalled: wait for it, don't pile up
            self._schedule(0.005)
            return
        records: list[Any] = []
        deadline = time.perf_counter() + TICK_SECONDS
        paced = self._interval > 0 and not self._pending
        diverged = failed = False
        try:
            while not self._stop.is_set() and (self._running or self._pending):
                record = self._instrumented_step()
                records.append(record)
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
            self._report(err, "training")
        if records:  # records first, so the GUI has them when the state changes
            self._emit_records(records)
        if diverged:
            self._set_state("diverged")
        elif self._stop.is_set():
            return
        elif self._pending:
            self._schedule(0.0)
        elif self._running:
            self._schedule(self._interval)
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

    def _instrumented_step(self) -> Any:
        """One training step, then the chosen instruments, each timed for its budget."""
        chosen = self._attachments()
        record = self._trainer.step()
        extras = {}
        for name in chosen:
            if self._stop.is_set():
                break
            extras[name] = self._measure(name)
        return dataclasses.replace(record, **extras) if extras else record

    def _measure(self, name: str) -> Any:
        """``trainer.probe()`` / ``gradients()`` / ``spectrum()``, remembering its cost."""
        start = time.perf_counter()
        value = getattr(self._trainer, name)()
        self._done[name] = time.perf_counter()
        self._cost[name] = self._done[name] - start
        return value

    def _snapshot(self) -> None:
        """The new model's state before any step: cheap instruments first, so the panels
        fill at once; gradients through time (the costly one) in a second list."""
        first = [self._measure("probe"), self._measure("spectrum")]
        self._emit_records([r for r in first if r is not None])
        if not self._stop.is_set():
            gradients = self._measure("gradients")
            if gradients is not None:
                self._emit_records([gradients])

    def _set_state(self, state: str) -> None:
        """Send ``state`` after any records kept back, so the GUI always has the records
        (e.g. the diverged step) before the state they led to."""
        if self._outbox:
            kept, self._outbox = self._outbox, []
            self._undelivered += 1
            self._send(("records", kept))
        self._send(("state", state))

    def _report(self, err: Exception, doing: str) -> None:
        from core.errors import UserError

        details = None
        if not isinstance(err, (UserError, ValueError)):
            log.exception("worker failed while %s", doing)
            message = f"{type(err).__name__} while {doing}: {err}"
            details = "".join(traceback.format_exception(err))
        else:
            message = str(err)
        self._send(("failed", Failure(message, getattr(err, "field", None), details)))
