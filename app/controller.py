"""The GUI-thread face of the training worker (see app/worker.py).

``TrainingController`` starts the worker's QThread, forwards commands to it as queued
signals, relays its signals back on the GUI thread (so even a lambda connected here runs
on the GUI thread), and on ``shutdown`` stops the worker, quits the thread and waits.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from app.worker import INSTRUMENTS, SWITCH_INTERVAL, Failure, Job, JobResult, TrainingWorker

log = logging.getLogger("rnn_explorer.app")


class TrainingController(QObject):
    """GUI-thread handle on the worker thread. Commands return at once (queued).

    The worker's signals are relayed through this object's own signals with explicit
    queued connections, so anything connected here (even a lambda, which has no thread of
    its own and would otherwise run in the worker's thread) runs on the GUI thread.
    """

    built = Signal(object)  # RunInfo
    records_ready = Signal(object)  # list of records
    state_changed = Signal(str)
    failed = Signal(object)  # Failure

    _build = Signal(object)
    _step = Signal(int)
    _run = Signal()
    _pause = Signal()
    _speed = Signal(float)
    _shutdown = Signal()
    _call = Signal(object)
    job_done = Signal(object)  # JobResult, on the GUI thread

    def __init__(self, make_trainer: Callable[[Any], Any] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._closed = False
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self.state = "idle"
        self.worker = TrainingWorker(make_trainer)
        self.thread = QThread()
        self.thread.setObjectName("training-worker")
        self.worker.moveToThread(self.thread)
        for command, slot in ((self._build, self.worker.build), (self._step, self.worker.step),
                              (self._run, self.worker.run), (self._pause, self.worker.pause),
                              (self._speed, self.worker.set_speed), (self._shutdown, self.worker.shutdown)):
            command.connect(slot, Qt.QueuedConnection)
        self.worker.built.connect(self._relay_built, Qt.QueuedConnection)
        self.worker.records_ready.connect(self._relay_records, Qt.QueuedConnection)
        self.worker.state_changed.connect(self._relay_state, Qt.QueuedConnection)
        self.worker.failed.connect(self._relay_failed, Qt.QueuedConnection)
        self._call.connect(self.worker.call, Qt.QueuedConnection)
        self.worker.job_done.connect(self._relay_job, Qt.QueuedConnection)
        self.thread.start()

    @Slot(object)
    def _relay_built(self, info: Any) -> None:
        if self._closed:
            return
        self.built.emit(info)

    @Slot(object)
    def _relay_records(self, records: list[Any]) -> None:
        kept = self.worker.delivered()
        if self._closed:  # queued before the shutdown: nobody may get records after it
            return
        self.records_ready.emit(records)
        if kept:  # what the worker kept back while we were busy, after the event loop turns
            QTimer.singleShot(0, self, lambda: self._relay_records(kept))

    @Slot(str)
    def _relay_state(self, state: str) -> None:
        if self._closed:
            return
        self.state = state
        self.state_changed.emit(state)

    @Slot(object)
    def _relay_failed(self, failure: Failure) -> None:
        if self._closed:
            return
        self.failed.emit(failure)

    def build(self, experiment: Any) -> None:
        self._build.emit(experiment)

    def step(self, count: int = 1, instruments: Iterable[str] = INSTRUMENTS) -> None:
        """Run ``count`` steps; the last carries ``instruments`` (what the panels show)."""
        self.worker.request(instruments)
        self._step.emit(count)

    def run(self) -> None:
        self._run.emit()

    def pause(self) -> None:
        self.worker.stop_now()
        self._pause.emit()

    def toggle(self) -> None:
        self.pause() if self.state == "running" else self.run()

    def set_speed(self, steps_per_second: float) -> None:
        self._speed.emit(float(steps_per_second))

    def request(self, instruments: Iterable[str]) -> None:
        self.worker.request(instruments)

    def call(self, fn: Callable[[Any], Any], tag: Any = None) -> None:
        """Run ``fn(trainer)`` in the worker thread, between steps; ``job_done`` brings a
        JobResult with ``tag``. For work on the live model that must not race training."""
        self._call.emit(Job(fn, tag))

    @Slot(object)
    def _relay_job(self, result: JobResult) -> None:
        if self._closed:
            return
        self.job_done.emit(result)

    @property
    def is_alive(self) -> bool:
        return self.thread.isRunning()

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Stop the worker and join its thread. True when it ended within ``timeout`` s.

        Never terminates the thread: a step in progress is allowed to finish.
        """
        self._closed = True  # from now on, nothing the worker sent is passed on
        if not self.thread.isRunning():
            return True
        self.worker.stop_now()
        self._shutdown.emit()
        in_time = self.thread.wait(int(timeout * 1000))
        if not in_time:
            log.warning("training thread still busy after %.1f s; waiting for the step to end", timeout)
            self.thread.wait()
        return in_time

