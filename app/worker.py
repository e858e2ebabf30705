"""Training off the GUI thread: a worker QObject on a QThread that emits plain records.

The worker owns the trainer (built in its thread, so torch is imported there, after the
window has painted). It trains in short ticks driven by a single-shot QTimer, so its own
event loop keeps running between ticks and queued commands (pause, step, build) arrive
promptly. Within a tick it polls a ``threading.Event`` between steps, so a stop request
from the GUI thread takes effect after at most one step, even mid-batch.

Instrumentation is on request: the GUI asks for a probe, gradients through time or a
spectrum when its next frame will show them (``request``), and the worker attaches them to
the next step only, each kept to a share of the run's time (INSTRUMENT_SHARE). Records
cross threads in lists (one list per tick) through queued signals, at most two in flight:
later records wait in one list until the GUI takes the earlier ones, so a busy GUI gets
bigger lists, not a queue, and training does not wait for it (unless it stalls for
MAX_KEPT records). Widgets are never touched here.

``app.controller.TrainingController`` is the GUI-thread face: it starts the thread,
forwards commands as queued signals, relays the worker's signals, and on ``shutdown`` stops
the worker, quits the thread and waits for it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from app.engine import make_trainer as default_make_trainer
from app.engine import run_info

log = logging.getLogger("rnn_explorer.app")

INSTRUMENTS = ("probe", "gradients", "spectrum")
TICK_SECONDS = 1 / 30  # at full speed, emit at most this often (the GUI redraws at ~30 Hz)
# Most of the wall time an instrument may take while training runs (see _attachments).
INSTRUMENT_SHARE = {"probe": 0.05, "gradients": 0.05, "spectrum": 0.03}
MAX_UNDELIVERED = 2  # record lists in flight to the GUI; later records wait in one list
MAX_KEPT = 10_000  # records waiting for a stalled GUI before training waits too
# While the worker runs Python code, a GUI thread waiting for the GIL gets it after the
# interpreter's switch interval (5 ms by default) on each of its many short Qt calls;
# 0.5 ms keeps redraws smooth during training (measured: ~2x more panel updates per second).
SWITCH_INTERVAL = 0.0005


@dataclass(frozen=True)
class Failure:
    """A message for the user; ``field`` names the experiment field at fault, if any;
    ``details``, for an unexpected error (a bug, not bad input), is its traceback."""

    message: str
    field: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class Job:
    """``fn(trainer)``, run in the worker thread between training steps (``TrainingController.call``).

    ``fn`` must return plain data (no live tensors); ``tag`` comes back with the result.
    """

    fn: Callable[[Any], Any]
    tag: Any = None


@dataclass(frozen=True)
class JobResult:
    """What a Job returned (``value``), or why it failed (``failure``)."""

    tag: Any
    value: Any = None
    failure: Failure | None = None


def leave_a_core_for_the_gui() -> None:
    """Let torch use every core but one, so the GUI thread can always draw.

    torch's intra-op pool defaults to every core; with the GUI busy on one of them, the
    pool's threads wait on each other and a training step gets slower, not faster
    (measured on 2 cores: 1 thread ~8 ms/step, 2 threads 68-400 ms/step for adding-lstm
    while drawing). Called in the worker thread, where torch is first imported.
    """
    import torch

    cores = max((os.cpu_count() or 2) - 1, 1)
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


class TrainingWorker(QObject):
    """Steps a trainer in its own thread. Slots run in that thread; ``request`` and
    ``stop_now`` are thread-safe and may be called from any thread."""

    built = Signal(object)  # RunInfo
    records_ready = Signal(object)  # list of StepRecord / ProbeRecord / GradientRecord / SpectrumRecord
    state_changed = Signal(str)  # idle | running | paused | diverged
    failed = Signal(object)  # Failure
    job_done = Signal(object)  # JobResult

    def __init__(self, make_trainer: Callable[[Any], Any] | None = None):
        super().__init__()
        self._make_trainer = make_trainer or default_make_trainer
        self._trainer: Any = None
        self._stop = threading.Event()
        self._wanted = {name: threading.Event() for name in INSTRUMENTS}
        self.attach_always: frozenset[str] = frozenset()  # stress tests and benchmarks
        self._running = False
        self._pending = 0
        self._interval_ms = 0  # 0 = as fast as possible
        self._budget = 0  # the experiment's step budget: a run pauses when it gets there
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)  # seconds each instrument took last time
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))  # when it last finished
        self._undelivered = 0  # record lists emitted but not yet taken by the GUI thread
        self._outbox: list[Any] = []  # records kept back while the GUI is behind
        self._lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)

    # -- thread-safe --------------------------------------------------------------------
    def request(self, kinds: Iterable[str]) -> None:
        """Attach these instruments to the next step (or the last of a queued batch)."""
        for kind in kinds:
            self._wanted[kind].set()

    def stop_now(self) -> None:
        """Leave the current tick after the step in progress."""
        self._stop.set()

    def delivered(self) -> list[Any]:
        """The GUI thread took one list of records (``TrainingController`` calls this).

        Returns the records kept back while the GUI was behind, once no other list is in
        flight (so they arrive in order); the caller delivers them, counted as one list.
        """
        with self._lock:
            self._undelivered = max(self._undelivered - 1, 0)
            if self._undelivered or not self._outbox:
                return []
            kept, self._outbox = self._outbox, []
            self._undelivered = 1
            return kept

    def _emit_records(self, records: list[Any]) -> None:
        """Send ``records`` now, or keep them for later when the GUI is behind.

        At most MAX_UNDELIVERED lists are in flight: a GUI busy drawing never has a queue
        of lists piling up, and training never waits for the GUI either.
        """
        with self._lock:
            self._outbox.extend(records)
            if self._undelivered >= MAX_UNDELIVERED:
                return
            records, self._outbox = self._outbox, []
            self._undelivered += 1
        self.records_ready.emit(records)

    # -- slots (worker thread) ---------------------------------------------------------------
    @Slot(object)
    def build(self, experiment: Any) -> None:
        """Replace the trainer with one for ``experiment``; keep the old one if that fails."""
        self._halt()
        self._stop.clear()  # a stop asked for before this command is spent
        leave_a_core_for_the_gui()
        try:
            trainer = self._make_trainer(experiment)
        except Exception as err:  # shown to the user at the boundary, never swallowed
            self._report(err, "building the experiment")
            return
        self._trainer = trainer
        self._budget = int(getattr(trainer.experiment, "steps", 0))
        for event in self._wanted.values():
            event.clear()
        self._cost = dict.fromkeys(INSTRUMENTS, 0.0)
        self._done = dict.fromkeys(INSTRUMENTS, float("-inf"))
        self.built.emit(run_info(trainer))
        self._snapshot()
        self._set_state("idle")

    @Slot(int)
    def step(self, count: int) -> None:
        """Queue ``count`` training steps, run as fast as possible; pauses a run first."""
        if self._trainer is None or count < 1:
            return
        self._running = False
        self._pending += count
        self._schedule(0)

    @Slot()
    def run(self) -> None:
        if self._trainer is None:
            return
        self._running = True
        self._set_state("running")
        self._schedule(self._interval_ms)

    @Slot()
    def pause(self) -> None:
        was_busy = self._running or self._pending
        self._halt()
        if was_busy:
            self._set_state("paused")

    @Slot(float)
    def set_speed(self, steps_per_second: float) -> None:
        """Limit the run to this many steps per second; 0 means as fast as possible."""
        self._interval_ms = 0 if steps_per_second <= 0 else max(1, round(1000 / steps_per_second))

    @Slot(object)
    def call(self, job: Job) -> None:
        """Run ``job.fn(trainer)`` here, where no step can change the model meanwhile (e.g.
        decoding), and emit ``job_done``. Failures come back in the result, not ``failed``."""
        from core.errors import UserError

        try:
            if self._trainer is None:
                raise UserError("there is no model yet: build an experiment first")
            result = JobResult(job.tag, job.fn(self._trainer))
        except Exception as err:  # shown by whoever asked, never swallowed
            if not isinstance(err, (UserError, ValueError)):
                log.exception("worker job failed")
            message = str(err) if isinstance(err, (UserError, ValueError)) else f"{type(err).__name__}: {err}"
            result = JobResult(job.tag, failure=Failure(message, getattr(err, "field", None)))
        self.job_done.emit(result)

    @Slot()
    def shutdown(self) -> None:
        """Stop, drop the trainer, hand this object back to the main thread and end the thread."""
        self._halt()
        self._trainer = None
        app = QCoreApplication.instance()
        if app is not None:
            self.moveToThread(app.thread())
        QThread.currentThread().quit()

    # -- internals ---------------------------------------------------------------------------
    def _halt(self) -> None:
        self._running = False
        self._pending = 0
        self._timer.stop()

    def _schedule(self, interval_ms: int) -> None:
        self._stop.clear()
        self._timer.start(interval_ms)

    def _tick(self) -> None:
        with self._lock:
            far_behind = len(self._outbox) >= MAX_KEPT
        if far_behind:  # the GUI has stalled: wait for it rather than pile up records
            self._timer.start(5)
            return
        records: list[Any] = []
        deadline = time.perf_counter() + TICK_SECONDS
        paced = self._interval_ms > 0 and not self._pending
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
            self._timer.start(0)
        elif self._running:
            self._timer.start(self._interval_ms)
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
            forced = name in self.attach_always
            if not (self._wanted[name].is_set() or forced):
                continue
            rest = self._cost[name] * (1.0 / INSTRUMENT_SHARE[name] - 1.0)
            if self._running and not forced and now - self._done[name] < rest:
                continue
            self._wanted[name].clear()
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
        """Emit ``state`` after any records kept back, so the GUI always has the records
        (e.g. the diverged step) before the state they led to."""
        with self._lock:
            kept, self._outbox = self._outbox, []
            self._undelivered += bool(kept)
        if kept:
            self.records_ready.emit(kept)
        self.state_changed.emit(state)

    def _report(self, err: Exception, doing: str) -> None:
        from core.errors import UserError

        details = None
        if not isinstance(err, (UserError, ValueError)):
            log.exception("worker failed while %s", doing)
            message = f"{type(err).__name__} while {doing}: {err}"
            details = "".join(traceback.format_exception(err))
        else:
            message = str(err)
        self.failed.emit(Failure(message, getattr(err, "field", None), details))


def __getattr__(name: str) -> Any:
    """``from app.worker import TrainingController`` keeps working (it lives in app.controller)."""
    if name == "TrainingController":
        from app.controller import TrainingController

        return TrainingController
    raise AttributeError(f"module 'app.worker' has no attribute {name!r}")
