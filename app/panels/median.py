"""The running median of the gradient norm, for choosing a clipping threshold.

Pascanu, Mikolov & Bengio (2013) set the clipping threshold from the typical gradient norm:
"values from half to ten times" the average norm over many updates still converge. The
median is that typical norm without the bursts (a few exploding steps move a mean a lot
and a median hardly at all). Plain Python and numpy, no Qt: the training panel draws it and
the Experiment dock's "clip = k x median" helper reads it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

MEDIAN_WINDOW = 100  # steps: long enough to be typical, short enough to follow training


class RunningMedian:
    """The median of the last ``window`` finite values appended (O(window) per append);
    non-finite values (a diverged step's norm) are skipped."""

    def __init__(self, window: int = MEDIAN_WINDOW):
        if window < 1:
            raise ValueError(f"window must be >= 1; got {window}")
        self.window = window
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def append(self, value: float) -> float:
        """Add ``value``; returns the median now (nan while empty)."""
        if math.isfinite(value):
            if len(self._order) == self.window:
                old = self._order.popleft()
                del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._order.append(value)
            bisect.insort(self._sorted, value)
        return self.value

    @property
    def value(self) -> float:
        s, n = self._sorted, len(self._sorted)
        if not n:
            return float("nan")
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

    def clear(self) -> None:
        self._order.clear()
        self._sorted.clear()


def suggested_clip(median: float, k: float) -> float | None:
    """k x median, rounded to 2 significant digits (a threshold, not a measurement), or
    None when there is no median yet."""
    if not (math.isfinite(median) and median > 0 and k > 0):
        return None
    value = k * median
    digits = 1 - math.floor(math.log10(value))
    return round(value, digits)
