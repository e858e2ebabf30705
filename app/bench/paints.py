"""What the window benchmarks count: each panel's paints (what the user sees redrawn), and
the resident memory of a process.

A frame-timer tick is not a redraw: a panel with nothing new skips its redraw, and Qt paints
only what changed. ``PaintCounter`` counts the paint events of each panel's main view (its
first pyqtgraph view's viewport, or the panel itself), so "redraws per second" means
pictures on screen, per panel.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QEvent, QObject


def surface(panel: Any) -> Any:
    """The widget whose paints show the panel redrawn: its first shown view's viewport, or
    the panel itself while it shows no view (e.g. the gates panel before the first run)."""
    views = [v for v in panel.plot_widgets() if not v.isHidden()]
    return views[0].viewport() if views else panel


class PaintCounter(QObject):
    """Counts paint events per panel name; ``on_paint(name)`` is called after each count."""

    def __init__(self, panels: dict[str, Any], on_paint=None):
        super().__init__()
        self.counts = dict.fromkeys(panels, 0)
        self._names: dict[Any, str] = {}
        self._on_paint = on_paint
        for name, panel in panels.items():
            target = surface(panel)
            self._names[target] = name
            target.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Paint:
            name = self._names.get(watched)
            if name is not None:
                self.counts[name] += 1
                if self._on_paint is not None:
                    self._on_paint(name)
        return False  # the panel paints as usual

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def rates(before: dict[str, int], after: dict[str, int], seconds: float,
          names: list[str]) -> dict[str, float]:
    """Paints per second of each panel in ``names`` between two snapshots."""
    return {name: (after[name] - before[name]) / seconds for name in names}


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default) in MiB, from /proc (Linux); nan elsewhere."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")
