"""Axes for the panels' plots: time axes labelled with t or with the probe's inputs, a log
axis whose labels stay apart, training steps, and captions over spans of t.

Those that show data of their own (labels, steps, spans) redraw their tick labels only when
it changes: drawing tick text is the costliest part of an axis.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetricsF, QPen

from app.panels.analysis import tick_stride
from app.theme import FONT_POINTS


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
        # label; a regular label that would touch one (4 px or less apart) makes room for it.
        marked = [t for t in range(lo, hi + 1) if self.labels[t].startswith("*")]
        if marked:
            metrics = QFontMetricsF(self.style["tickFont"] or self.font())
            pixels = size / max(maxVal - minVal, 1e-9)  # per time step

            def half(t: int) -> float:
                return metrics.horizontalAdvance(shown_label(self.labels[t])) / 2

            ticks = {t for t in ticks if all(abs(t - m) * pixels >= half(t) + half(m) + 4 for m in marked)}
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

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 (pyqtgraph naming)
        """Rows a line apart at least, each label wholly inside the axis (``nice_ticks`` over
        the rows half a line in from the ends; at least the middle row when one fits):
        pyqtgraph's spacing put three step labels in a 26-pixel heatmap row, each over the
        next, and a label at an end is dropped."""
        if size <= 0 or maxVal <= minVal:
            return []
        line = 1.15 * QFontMetricsF(self.style["tickFont"] or self.font()).height()
        per_unit = size / (maxVal - minVal)
        lo, hi = minVal + line / 2 / per_unit, maxVal - line / 2 / per_unit
        if hi < lo:
            return []
        values = [v for v in nice_ticks(lo, hi, (hi - lo) * per_unit, line, most=12) if float(v).is_integer()]
        middle = float(round((lo + hi) / 2))
        if not values and lo <= middle <= hi:
            values = [middle]
        return [(1.0, values)] if values else []

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


def nice_ticks(lo: float, hi: float, length: float, line: float, most: int) -> list[float]:
    """Values to label on a scale from ``lo`` to ``hi`` drawn ``length`` pixels long with
    labels ``line`` pixels tall: multiples of the smallest step of 1, 2 or 5 times a power
    of ten whose labels stay at least a line apart, at most ``most`` of them (none when
    not even one fits). A colour bar of log10 norms from -10.3 to 0.2 in 30 pixels gets
    -10 and 0, not six labels on top of each other."""
    span = hi - lo
    if not (np.isfinite(span) and span > 0) or length < line or most < 1:
        return []
    smallest = span * line / length  # the step whose labels just touch
    power = 10.0 ** np.floor(np.log10(smallest))
    for step in (power * m for m in (1, 2, 5, 10, 20, 50, 100)):
        if step < smallest * (1 - 1e-9):
            continue
        first = np.ceil(lo / step - 1e-9) * step
        values = [float(v) for v in np.arange(first, hi + step * 1e-9, step)]
        if 0 < len(values) <= most:
            return [0.0 if abs(v) < step * 1e-9 else v for v in values]
    return [float(hi)] if most >= 1 else []


def space_bar_ticks(bar: pg.ColorBarItem, most: int = 5):
    """Label ``bar`` with at most ``most`` round values a line apart for its height now
    (``nice_ticks``), again whenever its height changes; returns the update, for the caller
    to run after ``bar.setLevels``. pyqtgraph's own ticks put six labels in a 33-pixel bar,
    each over the next."""
    def update(*_) -> None:
        axis = bar.axis
        line = 1.15 * QFontMetricsF(axis.style["tickFont"] or axis.font()).height()  # with a gap
        height = axis.geometry().height()
        lo, hi = bar.levels()
        values = nice_ticks(lo, hi, height if height > 0 else most * line, line, most)
        ticks = [[(v, f"{v:g}") for v in values], []]
        if getattr(bar, "shown_ticks", None) != ticks:
            bar.shown_ticks = ticks
            axis.setTicks(ticks)

    bar.axis.geometryChanged.connect(update)
    update()
    return update
