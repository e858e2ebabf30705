"""Growable and bounded histories the panels plot, plus a steps-per-second meter.

Plain numpy containers for the GUI thread: records arrive one at a time, curves are drawn
from views of preallocated buffers (amortised O(1) appends, no per-frame concatenation).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class Series:
    """Columns of floats appended row by row; ``column(name)`` is a view of the filled part."""

    def __init__(self, *names: str, capacity: int = 1024):
        self.names = names
        self._data = np.full((capacity, len(names)), np.nan)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, *values: float) -> None:
        if self._n == len(self._data):
            grown = np.full((2 * len(self._data), len(self.names)), np.nan)
            grown[: self._n] = self._data
            self._data = grown
        self._data[self._n] = values
        self._n += 1

    def column(self, name: str) -> np.ndarray:
        """[n] view of one column (valid until the next append that grows the buffer)."""
        return self._data[: self._n, self.names.index(name)]

    def clear(self) -> None:
        self._n = 0

    def to_dict(self) -> dict[str, np.ndarray]:
        """Copies of every column, for export (and ``load``)."""
        return {name: self.column(name).copy() for name in self.names}

    def load(self, columns: dict[str, np.ndarray], key: str = "step", up_to: float | None = None) -> None:
        """Replace the rows with ``columns`` (as ``to_dict`` gives them), keeping rows whose
        ``key`` is at most ``up_to``; ValueError when a column is missing or they differ in length."""
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise ValueError(f"history lacks {', '.join(missing)}")
        data = np.column_stack([np.asarray(columns[name], dtype=np.float64).ravel() for name in self.names])
        if up_to is not None and len(data):
            data = data[data[:, self.names.index(key)] <= up_to]
        self._data = np.full((max(len(data), 1024), len(self.names)), np.nan)
        self._data[: len(data)] = data
        self._n = len(data)


class Snapshots:
    """The last ``limit`` snapshots of a [T] quantity, as a [T, n] image with their steps."""

    def __init__(self, limit: int = 400):
        self.limit = limit
        self._columns: deque[np.ndarray] = deque(maxlen=limit)
        self._steps: deque[int] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, step: int, column: np.ndarray) -> None:
        if self._columns and self._columns[-1].shape != column.shape:
            self.clear()  # the probe length changed: old columns no longer line up
        if self._steps and self._steps[-1] == step:
            self._columns[-1] = column
            return
        self._columns.append(np.asarray(column, dtype=np.float64))
        self._steps.append(step)

    def image(self) -> np.ndarray:
        """[T, n] (rows = time steps t, columns = snapshots in step order)."""
        if not self._columns:
            return np.zeros((0, 0))
        return np.stack(self._columns, axis=1)

    def steps(self) -> np.ndarray:
        return np.fromiter(self._steps, dtype=np.int64, count=len(self._steps))

    def load(self, steps: np.ndarray, image: np.ndarray, up_to: int | None = None) -> None:
        """Replace the snapshots with ``image`` [T, n] taken at ``steps`` [n] (as ``image()``
        and ``steps()`` give them), those after ``up_to`` left out; ValueError when they disagree."""
        steps, image = np.asarray(steps).ravel(), np.asarray(image, dtype=np.float64)
        if image.size and (image.ndim != 2 or image.shape[1] != len(steps)):
            raise ValueError(f"history: {len(steps)} steps but an image of shape {image.shape}")
        self.clear()
        for i, step in enumerate(steps):
            if up_to is None or step <= up_to:
                self.append(int(step), image[:, i])

    def clear(self) -> None:
        self._columns.clear()
        self._steps.clear()


class RateMeter:
    """Steps per second over a sliding window of wall time."""

    def __init__(self, window: float = 2.0, clock=time.monotonic):
        self.window = window
        self._clock = clock
        self._marks: deque[tuple[float, int]] = deque()

    def mark(self, step: int) -> None:
        now = self._clock()
        self._marks.append((now, step))
        while len(self._marks) > 2 and now - self._marks[0][0] > self.window:
            self._marks.popleft()

    def rate(self) -> float:
        """Steps per second; 0 when fewer than two marks or when the last is stale."""
        if len(self._marks) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._marks[0], self._marks[-1]
        if self._clock() - t1 > self.window or t1 <= t0:
            return 0.0
        return (s1 - s0) / (t1 - t0)

    def clear(self) -> None:
        self._marks.clear()
