"""The comparison off the GUI thread: core.compare on a QThread, plain records out.

Same pattern as app.worker: the worker object lives in its own QThread and emits lists of
plain records through queued signals; a ``threading.Event`` checked before every update
stops it within one step. A thread is started per comparison and ends with it, so nothing
keeps running when no comparison does. ``CompareRunner`` is the GUI-thread face.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

log = logging.getLogger("rnn_explorer.app")
EMIT_SECONDS = 1 / 30  # batch records so the GUI thread gets at most ~30 lists a second


class CompareWorker(QObject):
    """Runs one comparison in its thread (``run``); ``stop_now`` is thread-safe."""

    began = Signal(object)  # list[core.compare.KindInfo]
    records_ready = Signal(object)  # list[core.compare.CompareRecord]
    ended = Signal(str)  # "done" | "stopped" | the failure message

    def __init__(self):
        super().__init__()
        self._stop = threading.Event()

    def stop_now(self) -> None:
        self._stop.set()

    @Slot(object, int)
    def run(self, experiment: Any, steps: int) -> None:
        import torch

        from core.compare import Comparison

        # One intra-op thread (per thread with OpenMP): these models are small, and the
        # training worker and the GUI share the same few cores.
        torch.set_num_threads(1)
        try:
            comparison = Comparison(experiment)
            self.began.emit(comparison.infos())
            batch: list[Any] = []
            due = time.perf_counter() + EMIT_SECONDS
            for record in comparison.run(steps, stop=self._stop.is_set):
                batch.append(record)
                if time.perf_counter() > due:
                    self.records_ready.emit(batch)
                    batch, due = [], time.perf_counter() + EMIT_SECONDS
            if batch:
                self.records_ready.emit(batch)
        except Exception as err:  # shown to the user by the panel, never swallowed
            from core.errors import UserError

            if not isinstance(err, (UserError, ValueError)):
                log.exception("comparison failed")
            self.ended.emit(f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err))
            return
        self.ended.emit("stopped" if self._stop.is_set() else "done")


class CompareRunner(QObject):
    """GUI-thread handle: ``start`` a comparison, ``stop`` it, ``shutdown`` before closing.

    Signals are relayed with queued connections, so slots connected here run on the GUI thread.
    """

    began = Signal(object)
    records_ready = Signal(object)
    ended = Signal(str)
    _run = Signal(object, int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.thread: QThread | None = None
        self.worker: CompareWorker | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None

    def start(self, experiment: Any, steps: int) -> None:
        """Compare rnn, lstm and gru on ``experiment`` for ``steps`` steps each (one at a time)."""
        if self.thread is not None:
            raise RuntimeError("a comparison is already running; stop it first")
        self.worker = CompareWorker()
        self.thread = QThread()
        self.thread.setObjectName("compare-worker")
        self.worker.moveToThread(self.thread)
        self._run.connect(self.worker.run, Qt.QueuedConnection)
        self.worker.began.connect(self._began, Qt.QueuedConnection)
        self.worker.records_ready.connect(self._records, Qt.QueuedConnection)
        self.worker.ended.connect(self._ended, Qt.QueuedConnection)
        self.thread.start()
        self._run.emit(experiment, int(steps))

    def stop(self) -> None:
        """Ask the comparison to end after the update in progress (``ended`` follows)."""
        if self.worker is not None:
            self.worker.stop_now()

    def _current(self) -> bool:
        """Whether the signal being delivered comes from the running comparison (not one
        already shut down, whose last queued signals may still arrive)."""
        return self.worker is not None and self.sender() is self.worker

    @Slot(object)
    def _began(self, infos: Any) -> None:
        if self._current():
            self.began.emit(infos)

    @Slot(object)
    def _records(self, records: Any) -> None:
        if self._current():
            self.records_ready.emit(records)

    @Slot(str)
    def _ended(self, how: str) -> None:
        if self._current():
            self._join()
            self.ended.emit(how)

    def _join(self, timeout: float | None = None) -> bool:
        thread, worker = self.thread, self.worker
        if thread is None:
            return True
        worker.stop_now()
        thread.quit()
        finished = thread.wait() if timeout is None else thread.wait(int(timeout * 1000))
        if not finished:
            log.warning("comparison thread still busy after %.1f s; waiting for its step to end", timeout)
            thread.wait()
        self._run.disconnect(worker.run)
        self.thread = self.worker = None  # the thread has ended: both can go
        return finished

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Stop and join the thread (the step in progress is allowed to finish)."""
        return self._join(timeout)
