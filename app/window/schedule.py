"""When to ask the worker for instruments while training runs.

A probe, gradients through time or a spectrum is computed only when a visible panel shows
it, and no more often than a few times a second: gradients through time cost a full loop
forward and backward, so asking every frame would slow training itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from app.panels.base import INSTRUMENT_OF
from app.training.messages import Unavailable
from core.records import StepRecord

# Requests per second of wall time, at most.
RATES = {"probe": 10.0, "gradients": 3.0, "spectrum": 4.0, "counterfactual": 5.0}


class InstrumentSchedule:
    """Decides which instruments are due, given what the visible panels need."""

    def __init__(self, rates: dict[str, float] | None = None, clock: Callable[[], float] = time.monotonic):
        self.rates = dict(RATES if rates is None else rates)
        self._clock = clock
        self._last: dict[str, float] = {}

    def due(self, needed: Iterable[str]) -> set[str]:
        """The needed instruments whose interval has passed; marks them as asked for now."""
        now = self._clock()
        out = set()
        for name in needed:
            rate = self.rates.get(name, 1.0)
            if now - self._last.get(name, -1e9) >= 1.0 / rate:
                self._last[name] = now
                out.add(name)
        return out

    def reset(self) -> None:
        self._last.clear()


class CatchUp:
    """Which step each instrument's latest record is of, and what to ask for once stopped."""

    def __init__(self):
        self.measured: dict[str, int] = {}  # instrument -> the step of its latest record (or Unavailable)
        self._asked: set[tuple[str, int]] = set()  # (instrument, step) asked for already

    def note(self, record: Any) -> None:
        """A record arrived (a StepRecord with instruments attached, or a lone one)."""
        if isinstance(record, Unavailable):
            self.measured[record.instrument] = record.step
            return
        parts = ((record.probe, record.gradients, record.spectrum, record.counterfactual, record.dynamics)
                 if isinstance(record, StepRecord) else (record,))
        for part in parts:
            name = INSTRUMENT_OF.get(type(part))
            if name is not None:
                self.measured[name] = part.step

    def stale(self, needed: Iterable[str], step: int) -> set[str]:
        """The ``needed`` instruments older than ``step`` and not asked for at it yet
        (marked as asked now)."""
        out = {n for n in needed if self.measured.get(n) != step and (n, step) not in self._asked}
        self._asked.update((name, step) for name in out)
        return out

    def reset(self) -> None:
        self.measured.clear()
        self._asked.clear()
