"""What every panel on screen must satisfy, whatever it draws: the contract the journey test
(tests/app/test_journey.py) checks after every action, for every visible panel.

Written over ``window.panels`` and what each panel draws (its plot items, its note and
message labels, its widgets), never a private field of one panel, so a new panel is held to
it on the day it is registered. Each check returns problems as lines ("hidden: ...");
an empty list means the window is fine.

1. Each visible panel shows something: a plot item with data, or a visible message saying
   why not (e.g. "Decoding needs a translation preset").
2. Every plot item that has data is visible, and its data lie inside the view range (a
   curve or image cut off at an edge, or drawn off screen, is a problem).
3. Once stopped, every panel whose note names a step names the same one, the status bar's.
4. No text is elided or clipped: labels, check boxes, buttons and notes fit their space
   (measured with their font metrics), so do dock titles, tabs, axis labels, plot titles
   and colour-bar tick labels (none drawn over another, on every colour bar, nor on a
   plot's y axis); no plot with data is squeezed to a strip (``PLOT_MIN``).
5. No legend covers more than 15% of its plot's data area, nor any data point drawn there;
   no reference line's label is written over data either.
6. The window never asks for more than the smallest supported screen (``SMALLEST``): its
   minimum size, which every dock's and the central widget's minimum add up to, fits
   1280x720 whatever the preset and its data; and every text field shows its whole value
   (a field pushed past its scroll area's edge showed an empty box).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QDockWidget,
    QLabel,
    QLineEdit,
    QTabBar,
    QTableWidget,
    QWidget,
)

STEP = re.compile(r"\bstep (\d[\d,]*)\b")
LEGEND_SHARE = 0.15
SLACK = 1.0  # pixels of rounding allowed in "fits"
PLOT_MIN = 24.0  # pixels of view box below which a plot with data is a strip, not a plot
SMALLEST = (1280, 720)  # the smallest window size the layouts support (a laptop's screen)


# -- helpers ---------------------------------------------------------------------------------
def plot_items(panel) -> list[pg.PlotItem]:
    return [item for view in panel.plot_widgets() for item in view.scene().items()
            if isinstance(item, pg.PlotItem) and item.isVisible() and _shown(view)]


def _shown(widget: QWidget) -> bool:
    """On screen, not hidden behind a tab (a scroll area's own region is its viewport's)."""
    if not widget.isVisible():
        return False
    viewport = widget.viewport() if hasattr(widget, "viewport") else None
    return not (viewport or widget).visibleRegion().isEmpty()


def has_data(item) -> bool:
    if isinstance(item, pg.PlotDataItem):
        return item.xData is not None and len(item.xData) > 0
    if isinstance(item, pg.ImageItem):
        return item.image is not None and item.image.size > 0
    if isinstance(item, pg.BarGraphItem):
        for key in ("height", "width", "x0", "x"):
            value = item.opts.get(key)
            if value is not None and np.size(value) > 0:
                return True
        return False
    if isinstance(item, pg.ScatterPlotItem):
        return len(item.data) > 0
    return False


def plain(text: str) -> str:
    if "<" in text and ">" in text:
        doc = QTextDocument()
        doc.setHtml(text)
        return doc.toPlainText()
    return text


def text_width(widget: QWidget, text: str) -> float:
    """Pixels ``text`` takes in ``widget``'s font (rich text laid out as Qt lays it out)."""
    if "<" in text and ">" in text:
        doc = QTextDocument()
        doc.setDefaultFont(widget.font())
        doc.setDocumentMargin(0)
        doc.setHtml(text)
        return doc.idealWidth()
    metrics = QFontMetricsF(widget.font())
    return max(metrics.horizontalAdvance(line) for line in text.split("\n"))


def visible_step(panel) -> int | None:
    found = STEP.search(panel.note.text())
    return int(found.group(1).replace(",", "")) if found else None


# -- 1 and 2: data ---------------------------------------------------------------------------
def data_problems(panel) -> list[str]:
    problems = []
    shows_something = False
    for plot in plot_items(panel):
        vb = plot.vb
        (x0, x1), (y0, y1) = vb.viewRange()
        for item in list(vb.addedItems):
            if not has_data(item):
                continue
            if not item.isVisible():
                problems.append(f"{panel.name}: a {type(item).__name__} with data is hidden")
                continue
            shows_something = True
            bounds = item_bounds(item)
            if bounds is None:
                continue
            bx0, bx1, by0, by1 = bounds
            tx, ty = 0.02 * (x1 - x0) + 1e-9, 0.02 * (y1 - y0) + 1e-9
            if bx0 < x0 - tx or bx1 > x1 + tx or by0 < y0 - ty or by1 > y1 + ty:
                problems.append(f"{panel.name}: {type(item).__name__} data {_fmt(bounds)} outside the view "
                                f"{_fmt((x0, x1, y0, y1))} of {plot_label(plot)}")
        for item in vb.childGroup.childItems():
            if isinstance(item, pg.TextItem) and item.isVisible() and item.toPlainText().strip():
                shows_something = True  # a message in the plot ("waiting for ...", "needs ...")
                box, frame = item.sceneBoundingRect(), vb.sceneBoundingRect()
                if not frame.adjusted(-2, -2, 2, 2).contains(box):
                    problems.append(f"{panel.name}: the message {item.toPlainText()[:40]!r} is cut off by "
                                    f"{plot_label(plot)}")
    if not shows_something:
        shows_something = any(_shown(w) and plain(w.text()).strip() for w in panel.findChildren(QLabel)
                              if w is not panel.note) or _own_view_drawn(panel)
    if not shows_something:
        problems.append(f"{panel.name}: shows nothing and says nothing")
    return problems


def _own_view_drawn(panel) -> bool:
    """A panel drawn in its own QGraphicsView (the cell diagram) or a table with rows."""
    from PySide6.QtWidgets import QGraphicsView

    views = [v for v in panel.findChildren(QGraphicsView) if _shown(v) and v not in panel.plot_widgets()]
    tables = [t for t in panel.findChildren(QTableWidget) if _shown(t) and t.rowCount()]
    return any(v.scene() and v.scene().items() for v in views) or bool(tables)


def item_bounds(item) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) of the data an item draws, in view coordinates."""
    if isinstance(item, pg.PlotDataItem):
        x, y = item.getData()  # in log mode: the logs, as the view shows them
        if x is None or not len(x):
            return None
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return None
        return float(x[ok].min()), float(x[ok].max()), float(y[ok].min()), float(y[ok].max())
    if isinstance(item, pg.ImageItem):
        rect = item.mapRectToParent(item.boundingRect())
        return rect.left(), rect.right(), rect.top(), rect.bottom()
    return None


def plot_label(plot: pg.PlotItem) -> str:
    return plot.getAxis("left").labelText or plot.titleLabel.text or "a plot"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


# -- 3: the same step ------------------------------------------------------------------------
def step_problems(window) -> list[str]:
    """Once stopped: each visible panel naming a step names the status bar's."""
    if window.last_step is None:
        return []
    want = window.last_step.step
    problems = []
    for panel in window.visible_panels():
        step = visible_step(panel)
        if panel.name == "decoding":
            continue  # it decodes on request and says at which step ("decoded at step N")
        if step is not None and step != want:
            problems.append(f"{panel.name}: shows step {step}, the run is at step {want} ({panel.note.text()!r})")
    if window.status.step_label.text() != f"step {want:,}":
        problems.append(f"status bar: {window.status.step_label.text()!r}, the run is at step {want}")
    return problems


# -- 4: text that fits -----------------------------------------------------------------------
def widget_text_problems(root: QWidget, owner: str) -> list[str]:
    """Labels, buttons and fields under ``root`` that are cut off or squeezed; views and
    tables that reach past it; table cells whose text does not fit."""
    from PySide6.QtWidgets import QAbstractScrollArea, QScrollArea

    problems = []
    frame = root.rect()
    for widget in root.findChildren(QWidget):
        if not _shown(widget) or widget.window() is not root.window():
            continue
        if isinstance(widget, QAbstractScrollArea) and not isinstance(widget, QScrollArea) \
                and not _inside_graphics_or_table(widget):
            where = QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())
            if not frame.adjusted(-1, -1, 1, 1).contains(where):
                problems.append(f"{owner}: {_describe(widget)} reaches past the panel: {where.getRect()} in "
                                f"{frame.getRect()}")
            if isinstance(widget, QTableWidget):
                problems += _cells_cut(widget, owner)
            continue
        if isinstance(widget, (QLabel, QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox)):
            if _inside_graphics_or_table(widget):
                continue
            where = QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())
            if not frame.adjusted(-1, -1, 1, 1).contains(where) and not _scrolls(widget, root):
                problems.append(f"{owner}: {_describe(widget)} is cut off at {where.getRect()} in {frame.getRect()}")
                continue
            problems += _squeezed(widget, owner)
    return problems


def _cells_cut(table: QTableWidget, owner: str) -> list[str]:
    """Cells and headers of ``table`` whose text is wider than their column (Qt elides it)."""
    from PySide6.QtWidgets import QStyle

    problems = []
    header = table.horizontalHeader()
    margin = 2 * (table.style().pixelMetric(QStyle.PM_FocusFrameHMargin, None, table) + 1)  # as Qt lays text
    for col in range(table.columnCount()):
        if table.isColumnHidden(col):
            continue
        width = header.sectionSize(col)
        for row in range(table.rowCount()):
            item = table.item(row, col)
            if item is None or not item.text():
                continue
            metrics = QFontMetricsF(item.font() if item.font() != table.font() else table.font())
            if metrics.horizontalAdvance(item.text()) + margin > width + SLACK:
                problems.append(f"{owner}: table cell {item.text()[:30]!r} is cut ({width} px)")
        title = table.horizontalHeaderItem(col)
        if title is not None and title.text():
            metrics = QFontMetricsF(header.font())
            if max(metrics.horizontalAdvance(t) for t in title.text().split("\n")) + 8 > width:
                problems.append(f"{owner}: table header {title.text()!r} is cut ({width} px)")
    viewport = table.viewport().height()
    shown = sum(table.rowHeight(r) for r in range(table.rowCount()))
    if table.rowCount() and viewport < min(shown, 3 * table.rowHeight(0)) - SLACK:
        problems.append(f"{owner}: the table shows {viewport / max(table.rowHeight(0), 1):.1f} rows")
    return problems


def _scrolls(widget: QWidget, root: QWidget) -> bool:
    """Inside a scroll area under ``root``: what its viewport does not show, the user scrolls to."""
    from PySide6.QtWidgets import QScrollArea

    parent = widget.parentWidget()
    while parent is not None and parent is not root:
        if isinstance(parent, QScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def _inside_graphics_or_table(widget: QWidget) -> bool:
    from PySide6.QtWidgets import QAbstractItemView, QGraphicsView

    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, (QAbstractItemView, QGraphicsView)):
            return True
        parent = parent.parentWidget()
    return False


def _squeezed(widget: QWidget, owner: str) -> list[str]:
    if isinstance(widget, QLabel):
        text = widget.text()
        if not text.strip() or widget.pixmap() is not None and not widget.pixmap().isNull():
            return []
        room = widget.contentsRect().width() - 2 * widget.margin() - widget.indent() * (widget.indent() > 0)
        if widget.wordWrap():
            need = widget.heightForWidth(widget.width())
            if need > widget.height() + SLACK:
                return [f"{owner}: {_describe(widget)} needs {need} px of height, has {widget.height()}"]
            longest = max((text_width(widget, word) for word in plain(text).split()), default=0)
            return [] if longest <= room + SLACK else [f"{owner}: a word of {_describe(widget)} is cut"]
        need = text_width(widget, text)
        return [] if need <= room + SLACK else [f"{owner}: {_describe(widget)} needs {need:.0f} px, has {room}"]
    if isinstance(widget, QComboBox):  # what the closed box draws, and the arrow (the items show in a popup)
        shown = getattr(widget, "shown_text", widget.currentText)()
        need = QFontMetricsF(widget.font()).horizontalAdvance(shown) + 28
        return [] if widget.width() + SLACK >= need else [
            f"{owner}: {_describe(widget)} {shown!r} is {widget.width()} px wide, needs {need:.0f}"]
    if isinstance(widget, QLineEdit) and widget.text():
        return field_cut(widget, owner)
    hint = widget.minimumSizeHint() if isinstance(widget, (QLineEdit, QAbstractSpinBox)) else widget.sizeHint()
    if widget.width() + SLACK < hint.width():
        return [f"{owner}: {_describe(widget)} is {widget.width()} px wide, needs {hint.width()}"]
    return []


def field_cut(field: QLineEdit, owner: str) -> list[str]:
    """A field (a spin box's too: its text is in a QLineEdit) whose value is not wholly on
    screen: where its alignment puts the text, against the part of the field a parent (a
    scroll area) leaves visible. A right-aligned number in a field wider than what showed
    of it was drawn out of sight: an empty box."""
    from PySide6.QtWidgets import QStyle

    shown = field.visibleRegion().boundingRect()
    frame = field.style().pixelMetric(QStyle.PM_DefaultFrameWidth, None, field) if field.hasFrame() else 0
    margins = field.textMargins()
    inner = field.contentsRect()
    left = inner.left() + frame + margins.left() + 2  # Qt lays the text 2 px in from its contents
    right = inner.right() + 1 - frame - margins.right() - 2
    width = QFontMetricsF(field.font()).horizontalAdvance(field.text())
    if field.alignment() & Qt.AlignRight:
        x0, x1 = right - width, right
    elif field.alignment() & Qt.AlignHCenter:
        x0, x1 = (left + right - width) / 2, (left + right + width) / 2
    else:
        x0, x1 = left, left + width
    if x0 < max(left, shown.left()) - SLACK or x1 > min(right, shown.right() + 1) + SLACK:
        return [f"{owner}: {_describe(field)} draws its value at x {x0:.0f}-{x1:.0f}, shows x "
                f"{max(left, shown.left())}-{min(right, shown.right() + 1)}"]
    return []


def _describe(widget: QWidget) -> str:
    text = getattr(widget, "text", lambda: "")()
    text = plain(text) if isinstance(text, str) else ""
    name = widget.objectName() or type(widget).__name__
    return f"{name} {text[:40]!r}" if text else name


def dock_problems(window) -> list[str]:
    problems = []
    for dock in window.findChildren(QDockWidget):
        if not dock.isVisible() or dock.isFloating():
            continue
        tabbed = any(dock.windowTitle() in _tab_texts(bar) for bar in window.findChildren(QTabBar))
        if not tabbed and not dock.visibleRegion().isEmpty():
            metrics = QFontMetricsF(dock.font())
            need = metrics.horizontalAdvance(dock.windowTitle()) + 60  # the float and close buttons
            if need > dock.width():
                problems.append(f"dock {dock.windowTitle()!r}: title needs {need:.0f} px, has {dock.width()}")
    for bar in window.findChildren(QTabBar):
        if not _shown(bar):
            continue
        metrics = QFontMetricsF(bar.font())
        for i in range(bar.count()):
            rect = bar.tabRect(i)
            if not bar.rect().intersects(rect):
                continue  # scrolled out of sight (the bar's arrows reach it), not cut
            # partly out of sight at an edge, with the arrows shown: scrolled, as a scroll area
            scrolls = bar.usesScrollButtons() and bar.tabRect(bar.count() - 1).right() > bar.width()
            past = rect.left() < -SLACK or rect.right() > bar.width() + SLACK
            if metrics.horizontalAdvance(bar.tabText(i)) > rect.width() - 8 or past and not scrolls:
                problems.append(f"tab {bar.tabText(i)!r}: cut off ({rect.width()} px)")
    return problems


def _tab_texts(bar: QTabBar) -> set[str]:
    return {bar.tabText(i) for i in range(bar.count())} if bar.isVisible() else set()


def status_problems(window) -> list[str]:
    """The status bar's labels and its message (word-wrapped: whole, on as many lines as it needs)."""
    return widget_text_problems(window.status, "status bar")


def axis_problems(panel) -> list[str]:
    """Axis labels longer than their axis, plot titles wider than their plot, colour-bar
    tick labels on top of each other."""
    problems = []
    for plot in plot_items(panel):
        if plot.vb.height() < PLOT_MIN and any(has_data(i) and i.isVisible() for i in plot.vb.addedItems):
            problems.append(f"{panel.name}: {plot_label(plot)} is a {plot.vb.height():.0f} px strip")
        left = plot.getAxis("left")
        if left.isVisible() and left.style["showValues"]:
            problems += [f"{panel.name}: the y axis of {plot_label(plot)}: {text}"
                         for text in overlapping_tick_labels(left)]
        for name in ("left", "bottom", "right", "top"):
            axis = plot.getAxis(name)
            if not axis.isVisible() or not axis.label.isVisible() or not axis.labelText:
                continue
            length = axis.geometry().height() if name in ("left", "right") else axis.geometry().width()
            need = axis.label.boundingRect().width()
            if need > length + SLACK:
                problems.append(f"{panel.name}: axis label {plain(axis.labelText)!r} needs {need:.0f} px, "
                                f"its axis is {length:.0f}")
        title = plot.titleLabel
        if title.isVisible() and title.text:
            need = title.item.boundingRect().width()
            if need > plot.geometry().width() + SLACK:
                problems.append(f"{panel.name}: title {plain(title.text)!r} needs {need:.0f} px, has "
                                f"{plot.geometry().width():.0f}")
    for view in panel.plot_widgets():
        for item in view.scene().items():
            if isinstance(item, pg.ColorBarItem) and item.isVisible() and _shown(view):
                problems += [f"{panel.name}: colour bar {text}" for text in overlapping_tick_labels(item.axis)]
    return problems


def overlapping_tick_labels(axis: pg.AxisItem) -> list[str]:
    """Tick labels ``axis`` draws on top of each other ("'-2' over '-4'"), whoever chose
    the ticks (fixed or pyqtgraph's own): the rectangles pyqtgraph computes to draw them,
    measured in the axis's tick font as its paint does."""
    from PySide6.QtGui import QImage, QPainter

    if axis.geometry().isEmpty():
        return []
    image = QImage(1, 1, QImage.Format_ARGB32)
    painter = QPainter(image)
    try:
        if axis.style["tickFont"]:
            painter.setFont(axis.style["tickFont"])
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    texts = [(rect, text) for rect, _, text in (specs[2] if specs else ()) if text]
    found = []
    for i, (rect, text) in enumerate(texts):
        for other, other_text in texts[i + 1:]:
            both = rect.intersected(other)
            if both.width() > SLACK and both.height() > SLACK:
                found.append(f"label {text!r} overlaps {other_text!r} ({axis.geometry().height():.0f} px)")
    return found


def contrast(a: QColor, b: QColor) -> float:
    """The WCAG contrast ratio of two colours (1: the same; 21: black on white)."""
    def luminance(c: QColor) -> float:
        parts = [v / 255 for v in (c.red(), c.green(), c.blue())]
        r, g, b_ = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in parts]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def contrast_problems(panel) -> list[str]:
    """Text a panel draws in its plots (row names, titles) that does not stand out from the
    view's background: WCAG's 3:1 for large text at least (dark names on the dark theme)."""
    problems = []
    for view in panel.plot_widgets():
        if not _shown(view):
            continue
        ground = view.backgroundBrush().color()
        for item in view.scene().items():
            if isinstance(item, pg.LabelItem) and item.isVisible() and plain(item.text).strip():
                color = pg.mkColor(item.opts.get("color") or pg.getConfigOption("foreground"))
                ratio = contrast(color, ground)
                if ratio < 3.0:
                    problems.append(f"{panel.name}: {plain(item.text)[:30]!r} drawn {color.name()} on "
                                    f"{ground.name()} (contrast {ratio:.1f}:1)")
    return problems


# -- 5: legends ------------------------------------------------------------------------------
def legend_problems(panel) -> list[str]:
    problems = []
    for plot in plot_items(panel):
        legend = plot.legend
        if legend is None or not legend.isVisible() or not legend.items:
            continue
        area = plot.vb.sceneBoundingRect()
        box = legend.sceneBoundingRect()
        covered = area.intersected(box)
        if covered.isEmpty():
            continue
        share = covered.width() * covered.height() / max(area.width() * area.height(), 1.0)
        if share > LEGEND_SHARE:
            problems.append(f"{panel.name}: the legend covers {share:.0%} of {plot_label(plot)}")
        hits = points_under(plot, covered)
        if hits:
            problems.append(f"{panel.name}: the legend covers {hits} data points of {plot_label(plot)}")
    for plot in plot_items(panel):  # a reference line's name written over the curve it refers to
        for item in plot.items:  # (lines added with ignoreBounds are not in vb.addedItems)
            label = getattr(item, "label", None)
            if isinstance(item, pg.InfiniteLine) and item.isVisible() and label is not None \
                    and label.isVisible() and label.toPlainText().strip():
                hits = points_under(plot, label.sceneBoundingRect())
                if hits:
                    problems.append(f"{panel.name}: the label {label.toPlainText()!r} covers {hits} data points "
                                    f"of {plot_label(plot)}")
    return problems


def points_under(plot: pg.PlotItem, rect: QRectF) -> int:
    count = 0
    for item in plot.vb.addedItems:
        if isinstance(item, pg.PlotDataItem) and item.isVisible() and has_data(item):
            x, y = item.getData()
            if x is None or not len(x):
                continue
            step = max(len(x) // 2000, 1)
            for xv, yv in zip(x[::step], y[::step], strict=False):
                if math.isfinite(xv) and math.isfinite(yv) and rect.contains(plot.vb.mapViewToScene(
                        pg.QtCore.QPointF(float(xv), float(yv)))):
                    count += 1
    return count


# -- everything ------------------------------------------------------------------------------
def panel_problems(panel) -> list[str]:
    problems = []
    dock = panel.parentWidget()
    if isinstance(dock, QDockWidget) and not dock.rect().contains(panel.geometry()):
        problems.append(f"{panel.name}: {panel.width()}x{panel.height()} does not fit its dock "
                        f"{dock.width()}x{dock.height()} (its minimum is {panel.minimumSizeHint().toTuple()})")
    for view in panel.plot_widgets():  # plots laid out wider or taller than their view are cut
        layout = getattr(view, "ci", None)
        if layout is not None and _shown(view):
            inner, room = layout.geometry(), view.viewport().rect()
            if inner.width() > room.width() + 2 or inner.height() > room.height() + 2:
                problems.append(f"{panel.name}: plots laid out at {inner.width():.0f}x{inner.height():.0f} in a "
                                f"{room.width()}x{room.height()} view")
    return (problems + data_problems(panel) + axis_problems(panel) + legend_problems(panel) + contrast_problems(panel)
            + widget_text_problems(panel, panel.name))


def size_problems(window) -> list[str]:
    """A window minimum larger than ``SMALLEST``: Qt then forces the window wider than a
    laptop's screen, whichever dock (shown or behind a tab) asked for it."""
    need = window.minimumSizeHint()
    if need.width() <= SMALLEST[0] and need.height() <= SMALLEST[1]:
        return []
    wide = [f"{d.windowTitle()!r} {d.minimumSizeHint().width()}x{d.minimumSizeHint().height()}"
            for d in window.findChildren(QDockWidget)
            if d.minimumSizeHint().width() > SMALLEST[0] / 3 or d.minimumSizeHint().height() > SMALLEST[1] / 2]
    return [f"window: its minimum {need.width()}x{need.height()} exceeds {SMALLEST[0]}x{SMALLEST[1]} "
            f"(large dock minimums: {', '.join(wide) or 'none'})"]


def window_problems(window, stopped: bool = True) -> list[str]:
    """Every invariant over the window and its visible panels."""
    problems = size_problems(window)
    for panel in window.visible_panels():
        problems += panel_problems(panel)
    problems += dock_problems(window) + status_problems(window)
    problems += widget_text_problems(window.form, "experiment form") if _shown(window.form) else []
    problems += widget_text_problems(window.transport, "toolbar")
    if stopped:
        problems += step_problems(window)
    return problems


def assert_window_ok(window, stopped: bool = True, where: str = "") -> None:
    problems = window_problems(window, stopped)
    assert not problems, f"{where}:\n  " + "\n  ".join(problems)


__all__ = ["assert_window_ok", "window_problems", "panel_problems", "visible_step", "Qt"]
