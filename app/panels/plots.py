"""Building blocks shared by the panels: styled plots, heatmaps, shading, cursors and long
curves (axes: app.panels.axes, legends: app.panels.legends).

Each block creates its pyqtgraph items once and then only updates them (``setData``,
``setImage(autoLevels=False)``, ``setRegion``), the pattern the redraw budget relies on.
"""

from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QGraphicsItem
from shiboken6 import isValid

from app.panels.axes import space_bar_ticks
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
    for side in ("left", "bottom"):
        fit_label(plot.getAxis(side))
    return plot


# -- axis labels that fit their axis -----------------------------------------------------------
PLAIN_WORD = re.compile(r"^[A-Za-z]+$")


def label_variants(text: str) -> list[str]:
    """``text`` and shorter forms of it, longest first: "‖∇‖ (before clipping)" -> "‖∇‖";
    "singular value σ<sub>k</sub>" -> "σ<sub>k</sub>" (the symbol after plain words);
    "log₁₀ ‖∂L/∂h<sub>t</sub>‖" -> "log₁₀" (else the first word)."""
    variants = [text]
    short = re.sub(r"\s*\([^()]*\)\s*$", "", text)
    if short and short != text:
        variants.append(short)
    words = short.split(" ")
    if len(words) > 1:
        variants.append(words[-1] if all(PLAIN_WORD.match(w) for w in words[:-1]) else words[0])
    return list(dict.fromkeys(variants))


def label_length(axis: pg.AxisItem, text: str) -> float:
    """Pixels ``text`` takes along ``axis`` in the axis label's font."""
    doc = QTextDocument()
    doc.setDefaultFont(axis.label.font())
    doc.setDocumentMargin(axis.label.document().documentMargin())
    shown, axis.labelText = axis.labelText, text
    try:
        doc.setHtml(axis.labelString())  # with the axis's style (size, colour), as it draws it
    finally:
        axis.labelText = shown
    return doc.size().width()  # with its margins, as the label item's bounding box


def fit_label(axis: pg.AxisItem, variants: list[str] | None = None) -> None:
    """Keep ``axis``'s label no longer than the axis: when its text does not fit, the
    longest of its ``variants`` (default: ``label_variants``) that does is shown (the full
    text on a larger plot), so "‖∇‖ (before clipping)" never runs into the next plot's
    "loss". A label the panel sets later with ``axis.setLabel`` is fitted from then on."""
    state = getattr(axis, "label_fit", None)
    if state is not None:  # fitted already: new variants for its label
        state["variants"] = variants
        state["full"] = variants[0] if variants else state["full"]
        state["shown"] = None
        axis.fit_label()
        return
    state = axis.label_fit = {"full": axis.labelText, "shown": axis.labelText, "busy": False, "variants": variants}

    def refit() -> None:
        if state["busy"] or not axis.labelText or not (axis.label.isVisible() or state.get("dropped")):
            return
        if state["shown"] is not None and axis.labelText != state["shown"]:  # the panel set a new label
            state["full"], state["variants"] = axis.labelText, None
        vertical = axis.orientation in ("left", "right")
        length = axis.geometry().height() if vertical else axis.geometry().width()
        if length <= 0:
            return
        options = state["variants"] or label_variants(state["full"])
        chosen = next((v for v in options if label_length(axis, v) <= length), None)
        # None fits (a heatmap row squeezed to a few pixels): no label rather than one cut
        # off or over the next plot's; the full text stays in the axis's tooltip.
        dropped = chosen is None
        chosen = options[-1] if dropped else chosen
        state["shown"] = chosen
        if chosen != axis.labelText or dropped != bool(state.get("dropped")):
            state["busy"] = True
            try:
                axis.setLabel(chosen)  # (shows the label again)
                if dropped:
                    axis.showLabel(False)
                axis.setToolTip(state["full"] if dropped else "")
                state["dropped"] = dropped
                axis.resizeEvent(None)  # centre the new text (pyqtgraph places a label only on a resize)
            finally:
                state["busy"] = False

    axis.geometryChanged.connect(refit)
    axis.fit_label = refit
    set_label = axis.setLabel

    def set_and_fit(*args, **kwargs) -> None:  # a label set later (a preset's own) fits at once too
        text = args[0] if args else kwargs.get("text")
        plain_call = len(args) <= 1 and all(v is None for k, v in kwargs.items() if k != "text")
        if plain_call and not state["busy"] and text is not None and text in (state["full"], state["shown"]) \
                and axis.labelText == state["shown"]:
            return  # the label it has (fitted): a panel sets it on every redraw (not after a setLabel(""))
        set_label(*args, **kwargs)
        refit()

    axis.setLabel = set_and_fit


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
                 bar_label: str = "", bar: bool = True, ticks: int = 5):
        """``ticks``: the most values the colour bar labels (0: pyqtgraph's own)."""
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
            if bar_label:  # (the label is on the bar's left axis, the values on its right)
                fit_label(self.bar.getAxis("left"))
            # round values a line apart for the bar's height (pyqtgraph's ran into each other)
            self._set_ticks = space_bar_ticks(self.bar, ticks) if ticks else (lambda: None)
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


def hline(plot: pg.PlotItem, color: str, label: str | None = "", style: Qt.PenStyle = Qt.DashLine,
          position: float = 0.98) -> pg.InfiniteLine:
    """A horizontal reference line with an optional label (baseline, bound, clip); with
    ``label=None`` it has none (it is named in its plot's legend: app.panels.legends.LineKey)."""
    line = pg.InfiniteLine(pos=0, angle=0, movable=False, pen=pen(color, 1.5, style),
                           label=label,
                           labelOpts={"position": position, "color": color, "anchors": [(1, 1), (1, 1)],
                                      "fill": None})
    if getattr(line, "label", None) is not None:  # (pyqtgraph makes none for label=None)
        line.label.setFont(ui_font(FONT_POINTS - 1))
    line.setZValue(10)
    plot.addItem(line, ignoreBounds=True)
    return line


def message(plot: pg.PlotItem, theme: Theme) -> pg.TextItem:
    """A text item for 'nothing to show here' explanations, kept in the middle of whatever
    the plot's view shows and wrapped to its width (at a corner of the last run's range, or
    wider than a small plot, it was cut off: "…ce to sequence tasks")."""
    from PySide6.QtGui import QTextOption

    item = pg.TextItem("", color=theme.muted, anchor=(0.5, 0.5))
    item.setFont(ui_font(FONT_POINTS + 1))
    item.textItem.document().setDefaultTextOption(QTextOption(Qt.AlignCenter))
    plot.addItem(item, ignoreBounds=True)
    item.hide()

    def centre(*_) -> None:
        (x0, x1), (y0, y1) = plot.vb.viewRange()
        item.setTextWidth(max(plot.vb.width() - 16, 60))
        for points in (FONT_POINTS + 1, FONT_POINTS, FONT_POINTS - 1):  # smaller in a short plot, not cut
            item.setFont(ui_font(points))
            if item.textItem.boundingRect().height() <= plot.vb.height() - 4:
                break
        item.setPos((x0 + x1) / 2, (y0 + y1) / 2)

    set_text = item.setText

    def set_and_centre(*args, **kwargs) -> None:
        set_text(*args, **kwargs)
        centre()

    item.setText = set_and_centre
    plot.vb.sigRangeChanged.connect(centre)
    plot.vb.sigResized.connect(centre)
    item.centre = centre
    centre()
    return item
