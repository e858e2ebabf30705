"""The window's face of a child process (training, comparison): Qt signals on the GUI thread.

``ProcessLink`` starts the process (``multiprocessing``, spawn: a fresh interpreter that
never loads Qt; ``app.training.child.serve`` runs there), sends it typed commands
(app.training.messages) down one pipe and reads replies from another on a small reader
thread, which hands each reply to the GUI thread as a queued signal; there it is
dispatched by type to the handler a subclass declares. So everything connected to a
controller's signals runs on the GUI thread, in the order the process sent it.
``shutdown`` asks the process to end and, if a long step keeps it busy past the timeout,
stops it (unlike a thread, a process can be stopped safely mid-step: session files are
written atomically, so nothing half-written is left behind).

This is the one module of app.training that imports Qt; the child never imports it.
"""

from __future__ import annotations

import itertools
import logging
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.training.child import Spawned, spawn
from app.training.compare import CompareLoop
from app.training.loop import TRAINING_PROCESS, training_loop
from app.training.messages import (
    INSTRUMENTS,
    AttachAlways,
    Build,
    Built,
    Call,
    ComparisonBegan,
    ComparisonEnded,
    Delivered,
    Failed,
    Failure,
    JobDone,
    JobResult,
    Measure,
    Pause,
    Records,
    Request,
    Run,
    SetSpeed,
    Shutdown,
    StartComparison,
    StateChanged,
    Step,
    StopComparison,
)

log = logging.getLogger("rnn_explorer.app")


class _Reader(QThread):
    """Reads the process's replies and emits each; ends when the process's end of the pipe closes."""

    received = Signal(object)

    def __init__(self, connection: Any, name: str):
        super().__init__()
        self.setObjectName(f"{name}-reader")
        self._connection = connection

    def run(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                return
            self.received.emit(message)


class ProcessLink(QObject):
    """GUI-thread handle on one child process; subclasses declare ``replies()``.

    ``make_loop(send, stop)`` runs in the child, so it must be picklable (a module-level
    class or function, or a functools.partial of one).
    """

    failed = Signal(object)  # Failure: bad input, a bug (with details), or the process died
    process_name = "rnn-explorer-child"

    def __init__(self, make_loop: Callable[..., Any], parent: QObject | None = None):
        super().__init__(parent)
        self._make_loop = make_loop
        self._closed = False
        self._dispatch: dict[type, Callable[[Any], None]] = {Records: self._on_records, Failed: self._on_failed,
                                                             **self.replies()}
        self.process: Any = None
        self.reader: _Reader | None = None

    def replies(self) -> dict[type, Callable[[Any], None]]:
        """Reply type -> handler (on the GUI thread)."""
        return {}

    def on_records(self, records: tuple[Any, ...]) -> None:
        """Records arrived (acknowledged already)."""

    # -- the process ------------------------------------------------------------------------
    def start_process(self, spawned: Spawned | None = None) -> None:
        """Start the child process, or take over ``spawned`` (started with ``spawn`` and this
        link's ``make_loop`` before the window's process imported Qt)."""
        if self.process is not None:  # a restart after a crash: let go of the dead one's pipe
            self._commands.close()
        spawned = spawned or spawn(self._make_loop, self.process_name)
        self.process, self._commands, self._stop = spawned.process, spawned.commands, spawned.stop
        self.reader = _Reader(spawned.replies, self.process_name)
        self.reader.received.connect(self._on_reply)  # queued: the reader is another thread
        self.reader.finished.connect(self._on_reader_finished)
        self.reader.start()

    @property
    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def started(self) -> bool:
        return self.process is not None

    def send(self, message: Any) -> None:
        if self._closed or self.process is None:
            return
        try:
            self._commands.send(message)
        except (OSError, ValueError):  # the process is gone; _on_reader_finished says so
            log.warning("%s is not running; %s not sent", self.process_name, type(message).__name__)

    def interrupt(self) -> None:
        """End the work in progress after its current step (the command that follows says what next)."""
        if self.process is not None:
            self._stop.set()

    def shutdown(self, timeout: float = 2.0) -> bool:
        """End the process and the reader thread. True when the process ended by itself
        within ``timeout`` s; otherwise it is stopped (a step in progress is abandoned)."""
        if self._closed:
            return True
        self._closed = True  # from now on, nothing the process sent is passed on
        if self.process is None:
            return True
        try:
            self._commands.send(Shutdown())
        except (OSError, ValueError):
            pass
        self._stop.set()
        self.process.join(timeout)
        in_time = not self.process.is_alive()
        if not in_time:
            log.warning("%s still busy after %.1f s; stopping it", self.process_name, timeout)
            self.process.terminate()
            self.process.join(1.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self._commands.close()
        self.reader.wait()
        return in_time

    # -- replies (GUI thread) ---------------------------------------------------------------
    @Slot(object)
    def _on_reply(self, message: Any) -> None:
        if self._closed:  # sent before the shutdown: nobody may get anything after it
            return
        handler = self._dispatch.get(type(message))
        if handler is None:
            raise TypeError(f"{type(self).__name__} has no handler for {message!r}")
        handler(message)

    def _on_records(self, message: Records) -> None:
        self.send(Delivered())
        self.on_records(message.records)

    def _on_failed(self, message: Failed) -> None:
        self.failed.emit(message.failure)

    @Slot()
    def _on_reader_finished(self) -> None:
        if self._closed:
            return
        self.process.join(1.0)
        code = self.process.exitcode
        log.error("%s ended unexpectedly (exit code %s)", self.process_name, code)
        self.on_process_died(Failure(
            f"The {self.process_name.removeprefix('rnn-explorer-')} process ended unexpectedly (exit code "
            f"{code}). {self.restart_hint} The log file may say more.", details=f"exit code {code}"))

    restart_hint = ""

    def on_process_died(self, failure: Failure) -> None:
        self.failed.emit(failure)


class TrainingController(ProcessLink):
    """The training process. Commands return at once.

    ``make_trainer(source)`` runs in the process, so it must be picklable (a module-level
    function); the default builds from an Experiment or a ``messages.SessionFile``.
    """

    built = Signal(object)  # RunInfo
    records_ready = Signal(object)  # tuple of records
    state_changed = Signal(str)
    process_name = TRAINING_PROCESS
    restart_hint = "Build an experiment (Reset or Apply) to start a new one;"

    def __init__(self, make_trainer: Callable[[Any], Any] | None = None, parent: QObject | None = None,
                 spawned: Spawned | None = None):
        super().__init__(training_loop(make_trainer), parent)
        self._jobs: dict[int, Callable[[JobResult], None]] = {}  # job id -> who asked
        self._job_ids = itertools.count()
        self.state = "idle"
        self.start_process(spawned)

    def replies(self) -> dict[type, Callable[[Any], None]]:
        return {Built: self._on_built, StateChanged: self._on_state, JobDone: self._on_job_done}

    def on_records(self, records: tuple[Any, ...]) -> None:
        self.records_ready.emit(records)

    def _on_built(self, message: Built) -> None:
        self.built.emit(message.info)
        if message.past:
            self.records_ready.emit(message.past)

    def _on_state(self, message: StateChanged) -> None:
        self.state = message.state
        self.state_changed.emit(message.state)

    def _on_job_done(self, message: JobDone) -> None:
        answer = self._jobs.pop(message.job_id, None)
        if answer is not None:
            answer(message.result)

    def on_process_died(self, failure: Failure) -> None:
        self.state = "idle"
        self.failed.emit(failure)
        self.state_changed.emit("idle")
        for answer in self._jobs.values():  # nobody will answer them now
            answer(JobResult(None, failure))
        self._jobs.clear()

    # -- commands -------------------------------------------------------------------------------
    def build(self, experiment: Any) -> None:
        if not self.is_alive and not self._closed:  # it died: start a new one to build in
            self.start_process()
        self.send(Build(experiment))

    def step(self, count: int = 1, instruments: Iterable[str] = INSTRUMENTS) -> None:
        """Run ``count`` steps; the last carries ``instruments`` (what the panels show)."""
        self.request(instruments)
        self.send(Step(int(count)))

    def run(self) -> None:
        self.send(Run())

    def pause(self) -> None:
        self.interrupt()  # ends the step loop now; the command then sets the state
        self.send(Pause())

    def toggle(self) -> None:
        self.pause() if self.state == "running" else self.run()

    def set_speed(self, steps_per_second: float) -> None:
        self.send(SetSpeed(float(steps_per_second)))

    def request(self, instruments: Iterable[str]) -> None:
        """Attach these instruments to the next step."""
        self.send(Request(tuple(instruments)))

    def measure(self, instruments: Iterable[str]) -> None:
        """Compute these instruments now, between steps, for the model as it is (lone records)."""
        self.send(Measure(tuple(instruments)))

    def attach_always(self, instruments: Iterable[str]) -> None:
        """Attach these to every step, whatever their cost (stress tests and benchmarks)."""
        self.send(AttachAlways(tuple(instruments)))

    def call(self, fn: Callable[[Any], Any], answer: Callable[[JobResult], None]) -> None:
        """Run ``fn(trainer)`` in the training process, between steps; ``answer(JobResult)``
        is called on the GUI thread with what it returned (or why it failed). ``fn`` must be
        picklable (a module-level function or a ``functools.partial`` of one) and return
        plain data."""
        try:
            pickle.dumps(fn)
        except Exception as err:  # a programming error: say which rule it broke
            raise TypeError(f"a training job must be picklable (a module-level function or a partial "
                            f"of one), not {fn!r}: {err}") from err
        job_id = next(self._job_ids)
        self._jobs[job_id] = answer
        self.send(Call(job_id, fn))


class CompareController(ProcessLink):
    """The comparison process, started with the first comparison and kept until shutdown."""

    began = Signal(object)  # tuple of core.training.compare.KindInfo
    records_ready = Signal(object)  # tuple of CompareRecord
    ended = Signal(str)  # "done" | "stopped" | the failure message
    process_name = "rnn-explorer-compare"
    restart_hint = "Press Compare to start a new comparison;"

    def __init__(self, parent: QObject | None = None):
        super().__init__(CompareLoop, parent)
        self.running = False
        self._generation = 0  # replies of other (abandoned) comparisons are dropped

    def replies(self) -> dict[type, Callable[[Any], None]]:
        return {ComparisonBegan: self._on_began, ComparisonEnded: self._on_ended}

    def _current(self, message: Any) -> bool:
        return message.generation == self._generation and self.running

    def _on_records(self, message: Records) -> None:
        self.send(Delivered())
        if self._current(message):
            self.records_ready.emit(message.records)

    def _on_began(self, message: ComparisonBegan) -> None:
        if self._current(message):
            self.began.emit(message.infos)

    def _on_ended(self, message: ComparisonEnded) -> None:
        if self._current(message):
            self.running = False
            self.ended.emit(message.how)

    def on_process_died(self, failure: Failure) -> None:
        if self.running:
            self.running = False
            self.ended.emit(failure.message)

    def start(self, experiment: Any, steps: int) -> None:
        """Compare rnn, lstm and gru on ``experiment`` for ``steps`` steps each (one at a time)."""
        if self.running:
            raise RuntimeError("a comparison is already running; stop it first")
        if not self.is_alive:
            self.start_process()
        self._generation += 1
        self.running = True
        self.send(StartComparison(experiment, int(steps), self._generation))

    def stop(self) -> None:
        """Ask the comparison to end after the update in progress (``ended`` follows)."""
        if self.running:
            self.interrupt()
            self.send(StopComparison())

    def shutdown(self, timeout: float = 2.0) -> bool:
        self.running = False
        return super().shutdown(timeout)

    def abandon(self) -> None:
        """End the comparison now and drop whatever it still sends (no ``ended`` follows)."""
        if self.running:
            self.stop()
            self._generation += 1
            self.running = False
