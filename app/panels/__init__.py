"""The panel registry: every panel class the window shows, and where it docks by default.

Add a panel by listing its class in ``PANELS`` (and, optionally, its place in ``LAYOUT``;
a panel missing from the layout is tabbed with the last panel of the last column). The
window, the ``shot`` command and export all read this registry, so nothing else changes.
"""

from __future__ import annotations

from app.panels.base import Panel
from app.panels.cell.panel import CellPanel
from app.panels.compare.panel import ComparePanel
from app.panels.decoding.panel import DecodingPanel
from app.panels.dynamics import DynamicsPanel
from app.panels.gates import GatesPanel
from app.panels.gradients import GradientsPanel
from app.panels.hidden import HiddenPanel
from app.panels.spectrum import SpectrumPanel
from app.panels.training import TrainingPanel

PANELS: tuple[type[Panel], ...] = (TrainingPanel, HiddenPanel, GatesPanel, GradientsPanel, SpectrumPanel,
                                   CellPanel, DecodingPanel, ComparePanel, DynamicsPanel)

# Default arrangement: columns left to right, panels top to bottom, with relative sizes.
LAYOUT: tuple[tuple[tuple[str, int], ...], ...] = (
    (("training", 3), ("gradients", 3), ("spectrum", 2)),
    (("hidden", 4), ("gates", 5)),
)
COLUMN_WIDTHS = (5, 6)


def panel_names() -> tuple[str, ...]:
    return tuple(cls.name for cls in PANELS)


def panel_class(name: str) -> type[Panel]:
    """The panel class called ``name``; ValueError naming the known panels otherwise."""
    for cls in PANELS:
        if cls.name == name:
            return cls
    raise ValueError(f"unknown panel {name!r}; choose one of {', '.join(panel_names())}")


__all__ = ["PANELS", "LAYOUT", "COLUMN_WIDTHS", "Panel", "panel_class", "panel_names"]
