"""Legends for the panels' plots, none of which covers data: ``add_legend`` puts a plot's
legend in the plot's own title row, above its data, its entries wrapping into more rows
when the plot is narrow; ``legend_row`` lays one out in a row of its own above several
plots. Both hide while empty and follow theme changes."""

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


def add_legend(plot: pg.PlotItem, offset: tuple[float, float] | None = None, **kwargs) -> Legend:
    """``plot.addLegend`` with a ``TopLegend``: curves added with ``name=`` enter it as usual.

    Inside the data area a legend covered curves, points and reference-line labels as soon
    as the plot was small (the Spectrum legend hid most of its plot at 1280x720); above the
    data it covers nothing at any size. ``offset`` (where an inside legend went) is ignored;
    ``colCount`` is the most entries a row holds."""
    if plot.legend is None:
        kwargs.pop("brush", None), kwargs.pop("pen", None)  # no frame: it sits on the plot's margin
        plot.legend = TopLegend(plot, **kwargs)
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


class TopLegend(RowLegend):
    """A frameless legend in its plot's title row (above the view box and its left axis,
    beside nothing): as many entries a row as fit that width (at most ``colCount``), and
    the row as tall as its lines. Empty, it takes no height at all."""

    def __init__(self, plot: pg.PlotItem, colCount: int = 4, **kwargs):  # noqa: N803 (pyqtgraph naming)
        kwargs.setdefault("labelTextSize", f"{FONT_POINTS}pt")
        super().__init__(colCount=1, frame=False, **kwargs)
        self.plot = plot
        self.max_columns = max(int(colCount), 1)
        self.layout.setContentsMargins(0, 0, 0, 0)
        # As wide as its entries where there is room, narrower where not (``fit`` then
        # shortens the names): a fixed width held the plot wider than a narrowed panel.
        self.setSizePolicy(QSizePolicy.Maximum, QSizePolicy.Fixed)
        self.setMinimumWidth(0)
        self._names: dict[int, tuple[str, str, float]] = {}  # id(label): (full name, shown, full width)
        plot.titleLabel.setVisible(False)  # the row is the legend's (no panel titles these plots)
        plot.layout.removeItem(plot.titleLabel)
        plot.layout.addItem(self, 0, 0, 1, 2)  # over the left axis too: a row less on a narrow plot
        plot.layout.setAlignment(self, Qt.AlignRight | Qt.AlignVCenter)
        plot.vb.sigResized.connect(self.fit)
        self.fit()

    def addItem(self, item, name) -> None:  # noqa: N802 (pyqtgraph naming)
        super().addItem(item, name)
        self.fit()

    def removeItem(self, item) -> None:  # noqa: N802 (pyqtgraph naming)
        super().removeItem(item)
        self.fit()

    def clear(self) -> None:
        super().clear()
        self.fit()

    def fit(self, *_) -> None:
        """As many columns as the view box's width holds, and the title row as tall as the rows."""
        if not self.items:
            self.plot.layout.setRowFixedHeight(0, 0)
            return
        names = [self._natural(label) for _, label in self.items]
        entries = [sample.boundingRect().width() + width + self.ENTRY_SPACING
                   for (sample, _), (_, width) in zip(self.items, names, strict=True)]
        room = max(self.plot.vb.width() + self.plot.getAxis("left").width() * self.plot.getAxis("left").isVisible(),
                   1.0)
        columns = self.max_columns
        while columns > 1 and self._width(entries, columns) > room:
            columns -= 1
        if columns != self.columnCount:
            self.setColumnCount(columns)
        for (sample, label), (full, width) in zip(self.items, names, strict=True):
            self._shorten(label, full, width, room - sample.boundingRect().width() - self.ENTRY_SPACING)
        line = max(max(label.boundingRect().height(), sample.boundingRect().height()) for sample, label in self.items)
        rows = -(-len(self.items) // columns)
        height = rows * line + 2
        if self.plot.layout.rowMinimumHeight(0) != height:
            self.plot.layout.setRowFixedHeight(0, height)

    def _natural(self, label: pg.LabelItem) -> tuple[str, float]:
        """(full name, its width in pixels) of an entry's label, shortened or not."""
        known = self._names.get(id(label))
        if known is not None and label.text == known[1]:
            return known[0], known[2]
        self._names[id(label)] = (label.text, label.text, label.boundingRect().width())
        return label.text, self._names[id(label)][2]

    def _shorten(self, label: pg.LabelItem, full: str, width: float, room: float) -> None:
        """The name whole if it fits ``room`` pixels, else cut with an ellipsis to fit
        (the whole name in the label's tooltip)."""
        from PySide6.QtGui import QFont, QFontMetricsF

        shown = full
        if width > room + 1:
            font = QFont(label.item.font())
            size = str(label.opts.get("size") or "")
            if size.endswith("pt"):
                font.setPointSizeF(float(size[:-2]))
            metrics = QFontMetricsF(font)
            pad = width - metrics.horizontalAdvance(full)  # the label's margins
            shown = metrics.elidedText(full, Qt.ElideRight, max(room - pad, 0.0))
        if shown != label.text:
            self._names[id(label)] = (full, shown, width)
            label.setText(shown)
            label.setToolTip(full if shown != full else "")

    @staticmethod
    def _width(entries: list[float], columns: int) -> float:
        """The widest row's width when ``entries`` fill rows of ``columns`` (column by column widest)."""
        widths = [max(entries[c::columns]) for c in range(min(columns, len(entries)))]
        return sum(widths)


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


class LineKey:
    """A reference line's name as an entry of its plot's legend, which sits above the data:
    a name written on the line lay over any curve running along it (the loss at the
    baseline, singular values at 1/γ). ``set(name)`` shows it ("" takes it out)."""

    def __init__(self, line: pg.InfiniteLine, legend: pg.LegendItem):
        self.line = line
        self.legend = legend
        self.sample = pg.PlotDataItem(pen=line.pen)  # what the legend draws its sample from
        self.name = ""

    def set(self, name: str) -> None:
        if name == self.name and (not name or any(item is self.sample for item, _ in self.legend.items)):
            return
        self.legend.removeItem(self.sample)
        if name:
            self.legend.addItem(self.sample, name)
        self.name = name

    def restyle(self) -> None:
        """After the line's pen changed (a theme)."""
        self.sample.setPen(self.line.pen)
        for sample, _ in self.legend.items:
            sample.update()

