"""Legends for the panels' plots: one that hides while empty and follows theme changes, and
one laid out in a row of its own above the plots, so it covers no data."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy

from app.theme import FONT_POINTS, Theme


class Legend(pg.LegendItem):
    """A legend drawn only while it has entries: an empty one is a stray box over the data
    (e.g. a plot whose curves get names only when there are several layers)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hide()

    def addItem(self, item, name) -> None:  # noqa: N802 (pyqtgraph naming)
        super().addItem(item, name)
        self.setVisible(bool(self.items))

    def removeItem(self, item) -> None:  # noqa: N802 (pyqtgraph naming)
        super().removeItem(item)
        self.setVisible(bool(self.items))

    def clear(self) -> None:
        super().clear()
        self.hide()

    # LegendItem keeps a new colour or size for the next entries only: redraw the names it
    # has, so a change of theme (or the slide theme of an export) reaches them too.
    def setLabelTextColor(self, *args, **kwargs) -> None:  # noqa: N802 (pyqtgraph naming)
        super().setLabelTextColor(*args, **kwargs)
        self._rerender()

    def setLabelTextSize(self, size) -> None:  # noqa: N802 (pyqtgraph naming)
        super().setLabelTextSize(size)
        self._rerender()

    def _rerender(self) -> None:
        for _, label in self.items:
            label.setText(label.text)


def add_legend(plot: pg.PlotItem, offset: tuple[float, float] = (30, 30), **kwargs) -> Legend:
    """``plot.addLegend`` with a ``Legend``: curves added with ``name=`` enter it as usual."""
    if plot.legend is None:
        plot.legend = Legend(offset=offset, **kwargs)
        plot.legend.setParentItem(plot.vb)
    return plot.legend


class RowLegend(Legend):
    """A legend laid out in a cell of a GraphicsLayout (a row above or beside the plots), so
    it covers no data; its size comes from its entries, not from where it was anchored."""

    ENTRY_SPACING = 16  # pixels between one entry's name and the next entry's line

    def addItem(self, item, name) -> None:  # noqa: N802 (pyqtgraph naming)
        super().addItem(item, name)
        for column in range(1, 2 * self.columnCount - 1, 2):  # (line, name) column pairs
            self.layout.setColumnSpacing(column, self.ENTRY_SPACING)

    def updateSize(self) -> None:  # noqa: N802 (pyqtgraph naming)
        self.updateGeometry()  # the layout places it; LegendItem would set its geometry itself


def legend_row(layout: pg.GraphicsLayout, plot: pg.PlotItem, theme: Theme, *, row: int, col: int = 0,
               colspan: int = 1, columns: int = 1) -> RowLegend:
    """A frameless legend for ``plot`` in ``layout``'s cell (row, col), centred there, with
    ``columns`` entries a line: curves added to ``plot`` with ``name=`` enter it, and a
    theme styles it as the plot's own legend."""
    legend = RowLegend(colCount=columns, frame=False, labelTextColor=theme.foreground,
                       labelTextSize=f"{FONT_POINTS}pt")
    legend.layout.setContentsMargins(0, 0, 0, 0)  # no frame to keep clear of (Qt's default: ~10 px)
    legend.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
    layout.addItem(legend, row=row, col=col, colspan=colspan)
    layout.layout.setAlignment(legend, Qt.AlignCenter)
    plot.legend = legend
    return legend
