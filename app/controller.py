"""The GUI-side face of the training process (see app/worker.py).

``TrainingController`` starts the process (``multiprocessing``, spawn: a fresh interpreter
that never loads Qt), sends it commands down one pipe and reads its replies from another
on a small reader thread, which hands each reply to the GUI thread as a queued signal. So
everything connected to the controller's signals runs on the GUI thread, in the order the
process sent it. ``shutdown`` asks the process to end and, if a long step keeps it busy
past the timeout, stops it (unlike a thread, a process can be stopped safely mid-step:
session files are written atomically, so nothing half-written is left behind).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.worker import INSTRUMENTS, Failure, JobResult, serve

log = logging.getLogger("rnn_explorer.app")
_CONTEXT = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads


class _Reader(QThread):
    """Reads the process's replies and emits each; ends when the process's end of the pipe closes."""

    received = Signal(object)

    def __init__(self, connection: Any):
        super().__init__()
        self.setObjectName("training-reader")
        self._connection = connection

    def run(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                return
            self.received.emit(message)


class TrainingController(QObject):
    """GUI-thread handle on the training process. Commands return at once.

    ``make_trainer(source)`` runs in the process, so it must be picklable (a module-level
    function); the default builds from an Experiment or an ``engine.SessionFile``.
    """

    built = Signal(object)  # RunInfo
    records_ready = Signal(object)  # list of records
    state_changed = Signal(str)
    failed = Signal(object)  # Failure
    job_done = Signal(object)  # JobResult

    def __init__(self, make_trainer: Callable[[Any], Any] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._make_trainer = make_trainer
        self._closed = False
        self._jobs: dict[int, Any] = {}  # job id -> the caller's tag (tags never leave this process)
        self._job_ids = itertools.count()
        self.state = "idle"
        self.process: Any = None
        self.reader: _Reader | None = None
        self._start_process()

    def _start_process(self) -> None:
        from core.logs import LOGGER

        if self.process is not None:  # a restart after a crash: let go of the dead one's pipe
            self._commands.close()
        commands_out, commands_in = _CONTEXT.Pipe(duplex=False)  # (receiving end, sending end)
        replies_out, replies_in = _CONTEXT.Pipe(duplex=False)
        self._stop = _CONTEXT.Event()
        verbose = any(type(h).__name__ == "_Stderr" for h in logging.getLogger(LOGGER).handlers)
        self.process = _CONTEXT.Process(target=serve, name="rnn-explorer-training", daemon=True,
                                        args=(commands_out, replies_in, self._stop, self._make_trainer, verbose))
        self.process.start()
        commands_out.close()  # the process's ends: closing ours lets each side see the other go
        replies_in.close()
        self._commands = commands_in
        self.reader = _Reader(replies_out)
        self.reader.received.connect(self._on_reply)  # queued: the reader is another thread
        self.reader.finished.connect(self._on_reader_finished)
        self.reader.start()

    def _send(self, *message: Any) -> None:
        if self._closed:
            return
        try:
            self._commands.send(message)
        except (OSError, ValueError):  # the process is gone; _on_reader_finished says so
            log.warning("training process is not running; %s not sent", message[0])

    # -- replies (GUI thread) ------------------------------------------------------------------
    @Slot(object)
    def _on_reply(self, message: tuple) -> None:
        if self._closed:  # sent before the shutdown: nobody may get anything after it
            return
        kind, *args = message
        if kind == "records":
            self._send("delivered")
            self.records_ready.emit(args[0])
        elif kind == "built":
            info, past = args
            self.built.emit(info)
            if past:
                self.records_ready.emit(past)
        elif kind == "state":
            self.state = args[0]
            self.state_changed.emit(args[0])
        elif kind == "failed":
            self.failed.emit(args[0])
        elif kind == "job":
            job_id, value, failure = args
            self.job_done.emit(JobResult(self._jobs.pop(job_id, None), value, failure))

    @Slot()
    def _on_reader_finished(self) -> None:
        if self._closed:
            return
        self.process.join(1.0)
        code = self.process.exitcode
        log.error("training process ended unexpectedly (exit code %s)", code)
        self.state = "idle"
        self.failed.emit(Failure(
            f"The training process ended unexpectedly (exit code {code}). Build an experiment "
            "(Reset or Apply) to start a new one; the log file may say more.", details=f"exit code {code}"))
        self.state_changed.emit("idle")

    # -- commands -------------------------------------------------------------------------------
    def build(self, experiment: Any) -> None:
        if not self.is_alive and not self._closed:  # it died: start a new one to build in
            self._start_process()
        self._send("build", experiment)

    def step(self, count: int = 1, instruments: Iterable[str] = INSTRUMENTS) -> None:
        """Run ``count`` steps; the last carries ``instruments`` (what the panels show)."""
        self.request(instruments)
        self._send("step", int(count))

    def run(self) -> None:
        self._send("run")

    def pause(self) -> None:
        self._stop.set()  # ends the step loop now; the command then sets the state
        self._send("pause")

    def toggle(self) -> None:
        self.pause() if self.state == "running" else self.run()

    def set_speed(self, steps_per_second: float) -> None:
        self._send("speed", float(steps_per_second))

    def request(self, instruments: Iterable[str]) -> None:
        """Attach these instruments to the next step."""
        self._send("request", tuple(instruments))

    def attach_always(self, instruments: Iterable[str]) -> None:
        """Attach these to every step, whatever their cost (stress tests and benchmarks)."""
        self._send("attach_always", tuple(instruments))

    def call(self, fn: Callable[[Any], Any], tag: Any = None) -> None:
        """Run ``fn(trainer)`` in the training process, between steps; ``job_done`` brings a
        JobResult with ``tag``. ``fn`` must be picklable (a module-level function or a
        ``functools.partial`` of one) and return plain data."""
        try:
            pickle.dumps(fn)
        except Exception as err:  # a programming error: say which rule it broke
            raise TypeError(f"a training job must be picklable (a module-level function or a partial "
                            f"of one), not {fn!r}: {err}") from err
        job_id = next(self._job_ids)
        self._jobs[job_id] = tag
        self._send("call", job_id, fn)

    @property
    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def shutdown(self, timeout: float = 2.0) -> bool:
        """End the process and the reader thread. True when the process ended by itself
        within ``timeout`` s; otherwise it is stopped (a step in progress is abandoned)."""
        if self._closed:
            return True
        self._send("shutdown")
        self._closed = True  # from now on, nothing the process sent is passed on
        self._stop.set()
        self.process.join(timeout)
        in_time = not self.process.is_alive()
        if not in_time:
            log.warning("training process still busy after %.1f s; stopping it", timeout)
            self.process.terminate()
            self.process.join(1.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self._commands.close()
        self.reader.wait()
        return in_time
