"""When to ask the worker for instruments while training runs.

A probe, gradients through time or a spectrum is computed only when a visible panel shows
it, and no more often than a few times a second: gradients through time cost a full loop
forward and backward, so asking every frame would slow training itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

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
