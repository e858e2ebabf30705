"""Bounded-memory histories: per-step scalars as numpy columns, traces in a ring buffer.

A run of 100,000 steps must stay flat in memory: scalars cost 8 bytes a value per step
(under 6 MB for 100,000 steps), and traces (arrays per step) live in a fixed-capacity
ring buffer that keeps the most recent ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from core.records import StepRecord

SCALARS = ("step", "loss", "grad_norm", "grad_norm_clipped", "clipped", "diverged", "seconds")


class History:
    """Scalars of every step taken: ``history.column("loss")`` -> float64 [n]."""

    def __init__(self, capacity: int = 1024):
        self._n = 0
        self._cols: dict[str, np.ndarray] = {k: np.zeros(capacity) for k in SCALARS}

    def __len__(self) -> int:
        return self._n

    @property
    def names(self) -> list[str]:
        return list(self._cols)

    def append(self, record: StepRecord) -> None:
        values = {k: float(getattr(record, k)) for k in SCALARS}
        values.update({f"metric/{k}": float(v) for k, v in record.metrics.items()})
        self.append_values(values)

    def append_values(self, values: dict[str, float]) -> None:
        if self._n == len(next(iter(self._cols.values()))):
            # unwritten rows are nan: a metric a later step does not report (held-out scores come
            # every 50 steps) must read "not measured" there, not 0
            self._cols = {k: np.concatenate([v, np.full_like(v, np.nan)]) for k, v in self._cols.items()}
        for key, value in values.items():
            if key not in self._cols:  # a metric first reported now: earlier steps are nan
                self._cols[key] = np.full(len(next(iter(self._cols.values()))), np.nan)
            self._cols[key][self._n] = value
        self._n += 1

    def column(self, name: str) -> np.ndarray:
        """A copy of the filled part of one column (metrics are named "metric/<name>")."""
        return self._cols[name][: self._n].copy()

    def last(self, name: str, count: int) -> np.ndarray:
        return self._cols[name][max(0, self._n - count): self._n].copy()

    def to_columns(self) -> dict[str, np.ndarray]:
        return {k: self.column(k) for k in self._cols}

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray]) -> History:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"history columns differ in length: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        history = cls(max(n, 1024))
        for k in SCALARS:
            columns.setdefault(k, np.zeros(n))
        for k, v in columns.items():
            col = np.zeros(max(n, 1024)) if k in SCALARS else np.full(max(n, 1024), np.nan)
            col[:n] = np.asarray(v, dtype=np.float64)
            history._cols[k] = col
        history._n = n
        return history


class RingBuffer:
    """The most recent ``capacity`` items (e.g. GradientRecords for the history heatmap)."""

    def __init__(self, capacity: int = 256):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self._items: deque[Any] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        return self._items.maxlen

    def append(self, item: Any) -> None:
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __getitem__(self, i: int) -> Any:
        return self._items[i]

    def clear(self) -> None:
        self._items.clear()
