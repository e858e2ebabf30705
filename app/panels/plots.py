"""Building blocks shared by the panels: styled plots, heatmaps, shading, cursors and long
curves (axes: app.panels.axes, legends: app.panels.legends).

Each block creates its pyqtgraph items once and then only updates them (``setData``,
``setImage(autoLevels=False)``, ``setRegion``), the pattern the redraw budget relies on.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsItem
from shiboken6 import isValid

from app.theme import FONT_POINTS, Theme, colormap, ui_font


def pen(color: str, width: float = 2.0, style: Qt.PenStyle = Qt.SolidLine) -> pg.QtGui.QPen:
    p = pg.mkPen(color, width=width, style=style)
    p.setCosmetic(True)
    return p


def style_plot(plot: pg.PlotItem, theme: Theme) -> None:
    """Axis colours, fonts and grid of one PlotItem for ``theme``."""
    font = ui_font(FONT_POINTS)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        axis.setPen(pen(theme.muted, 1))
        axis.setTextPen(theme.foreground)
        axis.setTickFont(font)
        axis.label.setFont(font)
        # No "(x0.001)": on a log axis it reads as an error. pyqtgraph 0.14 still picks a
        # prefix for the current range when it is turned off, and keeps it (0.645 is then
        # labelled 645 after a theme change, so on every slide): with no range enabled for
        # prefixes it picks none.
        axis.setSIPrefixEnableRanges(())
        axis.enableAutoSIPrefix(False)
        # Drawing tick labels is most of a frame's cost; an axis changes far less often than
        # the data, so keep it as a pixmap until its range (and so its picture) changes.
        axis.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
    if plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=theme.foreground, size=f"{FONT_POINTS + 1}pt")
    plot.showGrid(x=True, y=True, alpha=0.15)
    if plot.legend is not None:
        plot.legend.setLabelTextColor(theme.foreground)
        plot.legend.setLabelTextSize(f"{FONT_POINTS}pt")
        plot.legend.setBrush(pg.mkBrush(theme.surface + "D0"))
        plot.legend.setPen(pen(theme.muted, 1))


def new_plot(layout: pg.GraphicsLayout, theme: Theme, *, row: int | None = None, col: int | None = None,
             title: str = "", x: str = "", y: str = "", bottom_axis: pg.AxisItem | None = None,
             left_axis: pg.AxisItem | None = None, top_axis: pg.AxisItem | None = None,
             **kwargs) -> pg.PlotItem:
    """Add a styled PlotItem to ``layout`` with axis labels (units in the label text).

    A ``top_axis`` is styled with the others but stays hidden until ``plot.showAxis("top")``.
    """
    axes = {name: axis for name, axis in (("bottom", bottom_axis), ("left", left_axis), ("top", top_axis))
            if axis is not None}
    # enableMenu=False also skips building pyqtgraph's context menus (a third of the time
    # it takes to create a plot, and the window's start-up is made of ~30 plots).
    plot = layout.addPlot(row=row, col=col, title=title or None, axisItems=axes or None,
                          enableMenu=False, **kwargs)
    plot.hideButtons()
    if top_axis is not None:
        plot.hideAxis("top")
    if x:
        plot.setLabel("bottom", x)
    if y:
        plot.setLabel("left", y)
    style_plot(plot, theme)
    return plot


def fit_left_axes(*plots: pg.PlotItem) -> None:
    """Left axes as wide as their tick labels and axis label need; ``plots`` stacked in one
    layout column keep room for the widest, so their view boxes start at the same x.

    A fixed width lets the label run into a long tick label ("0.0001", "0.645"). pyqtgraph
    sizes an axis to the labels it draws; here it only grows, so a range that moves every
    frame does not re-lay the plot out every frame. Each plot reserves the widest axis's
    width, its own axis drawn at the right of it, so x-linked plots put each x at the same
    place on screen (side by side plots need no more than their own width).
    """
    axes = [plot.getAxis("left") for plot in plots]

    def reserve() -> None:
        if not all(isValid(plot.layout) for plot in plots) or not all(isValid(axis) for axis in axes):
            return  # the panel is being deleted (e.g. an export's copy): nothing left to lay out
        width = max(axis.maximumWidth() for axis in axes)  # what each axis asked for
        for plot in plots:
            if plot.layout.columnMinimumWidth(0) != width:
                plot.layout.setColumnMinimumWidth(0, width)

    for plot, axis in zip(plots, axes, strict=True):
        axis.setStyle(autoReduceTextSpace=False)
        axis.setWidth(None)
        plot.layout.setAlignment(axis, Qt.AlignRight | Qt.AlignVCenter)
        if len(plots) > 1:
            axis.geometryChanged.connect(reserve)  # its width follows its labels: the others follow it
    if len(plots) > 1:
        reserve()


def long_curve(plot: pg.PlotItem, **kwargs) -> pg.PlotDataItem:
    """A curve over training steps, which may grow to 100,000 points and more.

    It keeps all its data but draws only the visible part (clip to view), reduced to the
    minimum and maximum of each pixel column (peak downsampling with a factor of 1): about
    two points a pixel column, so a long run draws as fast as a short one and spikes survive.
    """
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    kwargs.setdefault("autoDownsampleFactor", 1.0)
    return plot.plot(**kwargs)


class Heatmap:
    """An image in a PlotItem with a colour bar and fixed levels.

    ``set(image)`` takes a [rows, cols] array drawn with row r at y=r and column c at x=c
    (pixel centres on integers).
    """

    def __init__(self, plot: pg.PlotItem, levels: tuple[float, float], cmap: str,
                 bar_label: str = "", bar: bool = True, ticks: int = 0):
        self.plot = plot
        self.levels = levels
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setAutoDownsample(True)
        plot.addItem(self.image)
        plot.invertY(False)
        self.bar = None
        if bar:
            self.bar = pg.ColorBarItem(values=levels, colorMap=colormap(cmap), interactive=False,
                                       width=12, label=bar_label or None, colorMapMenu=False)
            self.bar.setImageItem(self.image, insert_in=plot)
            self._ticks = ticks
            self._set_ticks()
        else:
            self.image.setColorMap(colormap(cmap))
        self._shape: tuple[int, ...] = ()
        self._partners: list[pg.PlotItem] = []

    def share_width(self, *plots: pg.PlotItem) -> None:
        """Keep room on the right of ``plots`` as wide as the colour bar beside the image.

        A plot above or below the heatmap in the same layout column then has a view box
        exactly as wide as the image's, so x-linked plots show the same range of t with
        each t at the same x on screen (and in exports). Without it the image's view box is
        narrower by the bar, and linking cuts the last time steps off the image.
        """
        if self.bar is None:
            return
        if not self._partners:
            self.bar.geometryChanged.connect(self._reserve_bar_width)
        self._partners.extend(plots)
        self._reserve_bar_width()

    def _reserve_bar_width(self) -> None:
        width = self.bar.geometry().width() or self.bar.effectiveSizeHint(Qt.PreferredSize).width()
        for plot in self._partners:  # the columns ColorBarItem.setImageItem(insert_in=plot) uses
            plot.layout.setColumnFixedWidth(4, 5)
            plot.layout.setColumnFixedWidth(5, width)

    def _set_ticks(self) -> None:
        if self._ticks:  # a few fixed labels: small rows cannot fit pyqtgraph's default ticks
            values = np.linspace(*self.levels, self._ticks)
            self.bar.axis.setTicks([[(float(v), f"{v:g}") for v in values], []])

    def set(self, image: np.ndarray, levels: tuple[float, float] | None = None) -> None:
        if levels is not None and levels != self.levels:
            self.levels = levels
            if self.bar is not None:
                self.bar.setLevels(levels)
                self._set_ticks()
        self.image.setImage(image, autoLevels=False, levels=self.levels)
        if image.shape != self._shape:
            self._shape = image.shape
            rows, cols = image.shape[:2]
            self.image.setRect(-0.5, -0.5, cols, rows)
            self.plot.setLimits(xMin=-0.5, xMax=cols - 0.5, yMin=-0.5, yMax=max(rows, 1) - 0.5)
            self.plot.setRange(xRange=(-0.5, cols - 0.5), yRange=(-0.5, rows - 0.5), padding=0)

    def set_colormap(self, cmap: str) -> None:
        if self.bar is not None:
            self.bar.setColorMap(colormap(cmap))
        else:
            self.image.setColorMap(colormap(cmap))

    def style(self, theme: Theme) -> None:
        if self.bar is not None:
            for axis in (self.bar.axis,):
                axis.setPen(pen(theme.muted, 1))
                axis.setTextPen(theme.foreground)
                axis.setTickFont(ui_font(FONT_POINTS - 1))

    def clear(self) -> None:
        self.image.clear()
        self._shape = ()


class Shading:
    """Shaded vertical (or horizontal) bands over [start, stop) index ranges, pooled."""

    def __init__(self, plot: pg.PlotItem, color: str, orientation: str = "vertical"):
        self.plot = plot
        self.color = color
        self.orientation = orientation
        self._items: list[pg.LinearRegionItem] = []

    def set_spans(self, spans: list[tuple[int, int]]) -> None:
        while len(self._items) < len(spans):
            item = pg.LinearRegionItem(orientation=self.orientation, movable=False,
                                       brush=pg.mkBrush(self.color), pen=pg.mkPen(None))
            item.setZValue(5)
            self.plot.addItem(item, ignoreBounds=True)
            self._items.append(item)
        for i, item in enumerate(self._items):
            if i < len(spans):
                a, b = spans[i]
                item.setRegion((a - 0.5, b - 0.5))
                item.show()
            else:
                item.hide()

    def set_color(self, color: str) -> None:
        self.color = color
        for item in self._items:
            item.setBrush(pg.mkBrush(color))
            item.update()


def cursor(plot: pg.PlotItem, theme: Theme) -> pg.InfiniteLine:
    """The time-step cursor: a vertical line at t, drawn above images and shading."""
    line = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pen(theme.cursor, 1.5, Qt.DashLine))
    line.setZValue(20)
    plot.addItem(line, ignoreBounds=True)
    return line


def hline(plot: pg.PlotItem, color: str, label: str = "", style: Qt.PenStyle = Qt.DashLine,
          position: float = 0.98) -> pg.InfiniteLine:
    """A horizontal reference line with an optional label (baseline, bound, clip)."""
    line = pg.InfiniteLine(pos=0, angle=0, movable=False, pen=pen(color, 1.5, style),
                           label=label,
                           labelOpts={"position": position, "color": color, "anchors": [(1, 1), (1, 1)],
                                      "fill": None})
    line.label.setFont(ui_font(FONT_POINTS - 1))
    line.setZValue(10)
    plot.addItem(line, ignoreBounds=True)
    return line


def message(plot: pg.PlotItem, theme: Theme) -> pg.TextItem:
    """A centred text item for 'nothing to show here' explanations."""
    item = pg.TextItem("", color=theme.muted, anchor=(0.5, 0.5))
    item.setFont(ui_font(FONT_POINTS + 1))
    plot.addItem(item, ignoreBounds=True)
    item.hide()
    return item
