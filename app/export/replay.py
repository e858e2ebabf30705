"""The window's memory of a run, so an animation can replay its training (over steps).

The panels keep only what they draw now; replaying "the panel as it was at step s" needs
the records that led there. ``RecordLog`` keeps them within bounded memory:

- every step's scalars (loss, gradient norm, metrics: a StepRecord without its attached
  instruments), up to ``max_steps``; past that every other one is dropped and from then on
  only every 2nd (4th, ...) step is kept, so the loss curve stays evenly sampled;
- the instrument snapshots the window received (probe, gradients through time, spectrum:
  as often as the visible panels asked for them), up to ``max_snapshots`` steps and
  ``max_bytes`` of arrays, thinned the same way.

``records()`` gives them back in step order, ready to feed to a fresh panel
(app.export.animation.StepReplay). No Qt here: the window's export actions feed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from core.records import StepRecord

MAX_STEPS = 50_000  # about 1 KB each
MAX_SNAPSHOTS = 400
MAX_BYTES = 128 * 2**20


def nbytes(value: Any) -> int:
    """Bytes of the numpy arrays inside ``value`` (a record, tuple, dict or array)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


class _Thinned:
    """Items keyed by step, at most ``most`` of them: when full, every other one goes and the
    step spacing for new items doubles (so old and new parts stay equally dense)."""

    def __init__(self, most: int):
        self.most = most
        self.items: list[tuple[int, list[Any]]] = []  # (step, what was recorded at that step)
        self.gap = 1

    def add(self, step: int, item: Any) -> bool:
        if self.items and self.items[-1][0] == step:
            self.items[-1][1].append(item)  # e.g. probe and gradients of one step
            return True
        if self.items and step < self.items[-1][0] + self.gap:
            return False
        self.items.append((step, [item]))
        return True

    def thin(self) -> None:
        self.items = self.items[::2]
        self.gap *= 2

    def full(self) -> bool:
        return len(self.items) > self.most


class RecordLog:
    """A run's records, bounded (see the module docstring); ``add`` takes what the window takes."""

    def __init__(self, max_steps: int = MAX_STEPS, max_snapshots: int = MAX_SNAPSHOTS, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.limits = (max_steps, max_snapshots)
        self.reset()

    def reset(self) -> None:
        self.scalars = _Thinned(self.limits[0])
        self.snapshots: dict[type, _Thinned] = {}  # one per kind, thinned apart: each stays evenly spread
        self.bytes = 0

    def add(self, records: Iterable[Any]) -> None:
        for record in records:
            if isinstance(record, StepRecord):
                self.scalars.add(record.step, dataclasses.replace(record, probe=None, gradients=None, spectrum=None,
                                                                  dynamics=None))
                if self.scalars.full():
                    self.scalars.thin()
                attached = (record.probe, record.gradients, record.spectrum, record.dynamics)
            else:
                attached = (record,)
            for item in attached:
                if item is None:
                    continue
                kind = self.snapshots.setdefault(type(item), _Thinned(self.limits[1]))
                if kind.add(item.step, item):
                    self.bytes += nbytes(item)
                if kind.full():
                    self._thin(kind)
            while self.bytes > self.max_bytes:
                largest = max(self.snapshots.values(), key=self._bytes_of)
                if len(largest.items) <= 2:
                    break
                self._thin(largest)

    @staticmethod
    def _bytes_of(kind: _Thinned) -> int:
        return sum(nbytes(item) for _, items in kind.items for item in items)

    def _thin(self, kind: _Thinned) -> None:
        before = self._bytes_of(kind)
        kind.thin()
        self.bytes -= before - self._bytes_of(kind)

    def records(self) -> list[Any]:
        """Everything kept, in step order (a step's scalars before its instruments)."""
        merged = [(step, 0, item) for step, items in self.scalars.items for item in items]
        for kind in self.snapshots.values():
            merged += [(step, 1, item) for step, items in kind.items for item in items]
        merged.sort(key=lambda entry: (entry[0], entry[1]))
        return [item for _, _, item in merged]

    def describe(self) -> str:
        """What a replay can show, in one line for the dialog."""
        steps = self.scalars.items
        if not steps and not self.snapshots:
            return "Nothing recorded yet: train a few steps first."
        parts = []
        if steps:
            every = "every step" if self.scalars.gap == 1 else f"every {self.scalars.gap} steps"
            parts.append(f"loss at {every} ({steps[0][0]:,}–{steps[-1][0]:,})")
        for kind, kept in self.snapshots.items():
            name = kind.__name__.removesuffix("Record").lower()
            parts.append(f"{len(kept.items)} {name} snapshots" +
                         ("" if kept.gap == 1 else f" (at least {kept.gap} steps apart)"))
        return "Kept: " + ", ".join(parts) + "."
