"""RNN vs LSTM vs GRU in a process of its own: core.training.compare, plain records out.

The same mechanism as the main training (app.training.loop): a child process that never
loads Qt, typed commands in (StartComparison, StopComparison), records out with the
back-pressure of app.training.child.ChildLoop, and a stop event checked between updates,
so Stop takes effect after at most one step and closing the window ends the process within
2 s. In the window's process a comparison would share the GIL with drawing; here it keeps
a core of its own. ``app.training.controller.CompareController`` is the window's face.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from app.training.child import ChildLoop, failure_of
from app.training.messages import ComparisonBegan, ComparisonEnded, StartComparison, StopComparison

TICK_SECONDS = 1 / 30  # send at most ~30 record lists a second


class CompareLoop(ChildLoop):
    """Runs one comparison at a time, in ticks, between commands."""

    def __init__(self, send: Callable[[Any], None], stop: Any):
        super().__init__(send, stop)
        self._records: Iterator[Any] | None = None

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {StartComparison: self._on_start, StopComparison: self._on_stop}

    def _on_start(self, command: StartComparison) -> None:
        import torch

        from core.training.compare import Comparison

        self._end(None)  # a comparison already running is replaced (the window dropped it)
        self.flush()  # what is kept back belongs to the one before
        self.generation = command.generation
        self._stop.clear()
        torch.set_num_threads(1)  # small models; the window and the training share the cores
        try:
            comparison = Comparison(command.experiment)
        except Exception as err:  # shown by the panel, never swallowed
            self.send(ComparisonEnded(self.generation, failure_of(err, "building the comparison").message))
            return
        self.send(ComparisonBegan(self.generation, tuple(comparison.infos())))
        self._records = comparison.run(int(command.steps), stop=self._stop.is_set)
        self.schedule(0.0)

    def _on_stop(self, _: StopComparison) -> None:
        """Finish the run now: it sees the stop at its next update and closes every live kind
        with its gradients record (dropping it here lost the closing records a tick had not
        reached yet, e.g. the GRU's when gradients take longer than a tick)."""
        if self._records is None:
            return
        self._stop.set()
        try:
            closing = list(self._records)  # at most one record per live kind
        except Exception as err:  # shown to the user by the panel, never swallowed
            self._end(failure_of(err, "comparing").message)
            return
        self.emit_records(closing)
        self._end("stopped")

    def tick(self) -> None:
        if self._records is None:
            return
        if self.stalled:
            self.schedule(0.005)
            return
        batch: list[Any] = []
        deadline = time.perf_counter() + TICK_SECONDS
        try:
            for record in self._records:
                batch.append(record)
                if time.perf_counter() > deadline:
                    break
            else:
                self.emit_records(batch)
                self._end("stopped" if self._stop.is_set() else "done")
                return
        except Exception as err:  # shown to the user by the panel, never swallowed
            self.emit_records(batch)
            self._end(failure_of(err, "comparing").message)
            return
        self.emit_records(batch)
        self.schedule(0.0)

    def _end(self, how: str | None) -> None:
        """Drop the running comparison; say how it ended (None: say nothing)."""
        running, self._records = self._records, None
        self.unschedule()
        if running is not None and how is not None:
            self.send(ComparisonEnded(self.generation, how))

    def on_shutdown(self) -> None:
        self._records = None
