"""Building blocks shared by the panels: styled plots, heatmaps, time axes, shading, cursors
and long curves (legends: app.panels.legends).

Each block creates its pyqtgraph items once and then only updates them (``setData``,
``setImage(autoLevels=False)``, ``setRegion``), the pattern the redraw budget relies on.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsItem

from app.analysis import tick_stride
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


class TimeAxis(pg.AxisItem):
    """A bottom axis of t under a heatmap, whose end labels may reach past the axis's ends.

    The view starts half a cell before t = 0 (pixel centres on integers), so once a cell is
    narrower than the label "0", the label sticks out of the axis and pyqtgraph drops it
    (with a grid, a label must fit inside the axis and its view box). Here it may stick out
    by up to ``overflow`` pixels into the empty corner below the left axis (or below the
    colour bar, at the right), centred under its tick as every other label.
    """

    OVERFLOW = 24.0  # more than half of any label t can have

    def __init__(self, orientation: str = "bottom", **kwargs):
        super().__init__(orientation, **kwargs)
        self.overflow = self.OVERFLOW

    def boundingRect(self):  # noqa: N802 (Qt naming)
        return super().boundingRect().adjusted(-self.overflow, 0, self.overflow, 0)

    def generateDrawSpecs(self, p):  # noqa: N802 (pyqtgraph naming)
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        (line_pen, start, stop), ticks, texts = specs
        # a flat cap: the wider bounds no longer cut the line's square cap off at the ends
        line_pen = QPen(line_pen)
        line_pen.setCapStyle(Qt.FlatCap)
        return (line_pen, start, stop), ticks, texts


class LabelAxis(TimeAxis):
    """A time axis showing the probe's labels (input tokens or values) at integer t.

    As many labels as fit are drawn; zooming in reveals the rest. The label at t = 0 (or at
    the last t) may reach past the axis's end by half its width, as a TimeAxis's "0" does.
    """

    def __init__(self, orientation: str = "bottom", **kwargs):
        super().__init__(orientation, **kwargs)
        self.labels: tuple[str, ...] = ()

    def set_labels(self, labels: tuple[str, ...]) -> None:
        labels = tuple(labels)
        if labels == self.labels:
            return  # redrawing tick text is the costliest part of an axis
        self.labels = labels
        metrics = QFontMetricsF(self.style["tickFont"] or self.font())
        widest = max((metrics.horizontalAdvance(shown_label(s)) for s in labels), default=0.0)
        self.prepareGeometryChange()  # the bounds change with the widest label
        self.overflow = max(self.OVERFLOW, widest / 2 + 2)
        self.picture = None
        self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802 (Qt naming)
        if not self.labels:
            return super().tickValues(minVal, maxVal, size)
        lo, hi = max(int(np.ceil(minVal)), 0), min(int(np.floor(maxVal)), len(self.labels) - 1)
        if hi < lo:
            return []
        longest = max(len(s) for s in self.labels[lo : hi + 1])
        stride = tick_stride(hi - lo + 1, size, min(longest, 8), char_pixels=FONT_POINTS * 0.8)
        first = -(-lo // stride) * stride
        ticks = set(range(first, hi + 1, stride))
        # Marked inputs (a leading '*', e.g. the adding problem's two operands) always get a
        # label; regular ticks too close to one make room for it.
        marked = [t for t in range(lo, hi + 1) if self.labels[t].startswith("*")]
        if marked and stride > 1:
            ticks = {t for t in ticks if all(abs(t - m) >= max(stride // 2, 1) for m in marked)}
        ticks.update(marked)
        return [(float(stride), [float(t) for t in sorted(ticks)])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        if not self.labels:
            return super().tickStrings(values, scale, spacing)
        out = []
        for v in values:
            i = int(round(v))
            out.append(shown_label(self.labels[i]) if 0 <= i < len(self.labels) else "")
        return out


def shown_label(text: str) -> str:
    """A probe label as a time axis shows it: at most 8 characters."""
    return text if len(text) <= 8 else text[:7] + "…"


class LogAxis(pg.AxisItem):
    """A vertical log axis whose tick labels never run into each other.

    pyqtgraph labels every 2, 3, ... 9 times a power of ten once some of them fit, so 0.9
    sits on 1 and 0.09 on 0.1. Here all of them are labelled where they fit, else 1, 2 and
    5 times a power of ten, else as many powers of ten as fit (within one decade: as many
    labels as fit, 1, 5 and 2 first). Every tick and grid line stays; only labels are left
    out. Off log mode it is a plain axis.
    """

    RANK = (1, 5, 2, 3, 4, 6, 7, 8, 9)  # which leading digits to label first

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._labelled: set[float] = set()

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph naming)
        # In log mode a power of ten comes back in both the major and the minor level, and
        # its label would be drawn twice (heavier than the rest): keep the first.
        seen: set[float] = set()
        levels = []
        for spacing, values in super().tickValues(minVal, maxVal, size):
            keep = [v for v in values if _key(v) not in seen]
            seen.update(_key(v) for v in values)
            levels.append((spacing, keep))
        if self.logMode and maxVal != minVal:
            values = [v for _, level in levels for v in level]  # pyqtgraph's order: the widest spacing first
            self._labelled = {_key(v) for v in self._spaced(values, size / abs(maxVal - minVal))}
        return levels

    def _spaced(self, values: list[float], pixels_per_decade: float) -> list[float]:
        """The values (log10) to label, each label clear of the others."""
        # pyqtgraph draws a label 0.8 of a line high, centred on its tick; keep 2 px between
        gap = 0.8 * QFontMetricsF(self.style["tickFont"] or self.font()).height() + 2

        def apart(chosen: list[float]) -> bool:
            y = sorted(v * pixels_per_decade for v in chosen)
            return all(b - a >= gap for a, b in zip(y, y[1:]))

        for digits in (self.RANK, (1, 2, 5)):
            chosen = [v for v in values if _mantissa(v) in digits]
            if len(chosen) >= 2 and apart(chosen):
                return chosen
        decades = [v for v in values if _mantissa(v) == 1]
        kept: list[float] = []
        for v in decades if len(decades) >= 2 else sorted(values, key=lambda v: self.RANK.index(_mantissa(v))):
            if apart([*kept, v]):
                kept.append(v)
        return kept

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph naming)
        strings = super().logTickStrings(values, scale, spacing)
        return [text if _key(v) in self._labelled else "" for v, text in zip(values, strings, strict=True)]


def _key(value: float) -> float:
    return round(float(value), 9)


def _mantissa(log_value: float) -> int:
    """2 for log10(0.02): the leading digit of the value at a log tick."""
    return round(10 ** (float(log_value) - np.floor(float(log_value) + 1e-9)))


class StepAxis(pg.AxisItem):
    """An axis whose integer positions stand for training steps listed in ``steps``."""

    def __init__(self, orientation: str = "left", **kwargs):
        super().__init__(orientation, **kwargs)
        self.steps = np.zeros(0, dtype=np.int64)

    def set_steps(self, steps: np.ndarray) -> None:
        if np.array_equal(steps, self.steps):
            return
        self.steps = steps
        self.picture = None
        self.update()

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        n = len(self.steps)
        return [str(int(self.steps[int(round(v))])) if 0 <= round(v) < n and abs(v - round(v)) < 1e-6 else ""
                for v in values]


class SpanLabelAxis(pg.AxisItem):
    """A top axis that names shaded spans of t, e.g. "padding" over the padded steps.

    The text sits above the view box, so it covers no data; each label is centred on the
    visible part of its span and kept inside the axis when the span reaches an edge. No
    axis line, ticks or grid: it is a caption, not a scale.
    """

    def __init__(self, text: str, orientation: str = "top", **kwargs):
        super().__init__(orientation, **kwargs)
        self.text = text
        self.spans: tuple[tuple[int, int], ...] = ()
        self.setStyle(tickLength=0)

    def set_spans(self, spans: list[tuple[int, int]]) -> None:
        """Label the index ranges [start, stop) (as ``Shading.set_spans`` shades them)."""
        spans = tuple((int(a), int(b)) for a, b in spans)
        if spans == self.spans:
            return
        self.spans = spans
        self.picture = None
        self.update()

    def setGrid(self, grid) -> None:  # noqa: N802 (pyqtgraph naming; PlotItem.showGrid calls it)
        super().setGrid(False)  # a grid line at a label would run through the data

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802 (Qt naming)
        if not self.spans or size <= 0 or maxVal <= minVal:
            return []
        font = self.style["tickFont"] or self.font()
        # half the text's width in view units, and a few pixels more: a label touching the
        # axis's end fails pyqtgraph's containment test by rounding and is dropped
        half = (0.5 * QFontMetricsF(font).horizontalAdvance(self.text) + 3) * (maxVal - minVal) / size
        values = []
        for a, b in self.spans:
            lo, hi = max(a - 0.5, minVal), min(b - 0.5, maxVal)
            if hi > lo:
                values.append(float(np.clip((lo + hi) / 2, minVal + half, max(maxVal - half, minVal + half))))
        return [(1.0, values)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        return [self.text] * len(values)

    def generateDrawSpecs(self, p):  # noqa: N802 (pyqtgraph naming)
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        (_, start, stop), _, texts = specs
        return (pg.mkPen(None), start, stop), [], texts


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
            if ticks:  # a few fixed labels: small rows cannot fit pyqtgraph's default ticks
                lo, hi = levels
                values = np.linspace(lo, hi, ticks)
                self.bar.axis.setTicks([[(float(v), f"{v:g}") for v in values], []])
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

    def set(self, image: np.ndarray, levels: tuple[float, float] | None = None) -> None:
        if levels is not None and levels != self.levels:
            self.levels = levels
            if self.bar is not None:
                self.bar.setLevels(levels)
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
