"""The attention heatmap of one hypothesis: generated tokens (rows) x source tokens (columns).

Row j is the attention a_{j,·} the decoder paid over the source while producing token j;
each row sums to 1 (a sequential map over the fixed range [0, 1]). Hover a cell for its
value; the selected target token's row is outlined.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from app.panels.axes import LabelAxis
from app.panels.plots import Heatmap, message, new_plot, pen
from app.theme import FONT_POINTS, Theme, ui_font

LEVELS = (0.0, 1.0)


def tick_text(token: str) -> str:
    return {" ": "␣", "<eos>": "eos", "<unk>": "unk"}.get(token, token)


class AttentionPlot(pg.GraphicsLayoutWidget):
    """``set(weights, source, target, selected_row)``; ``readout`` is the hovered cell's text."""

    def __init__(self, theme: Theme, parent=None):
        super().__init__(parent)
        self.theme = theme
        self.setBackground(theme.surface)
        # The source's characters as many as fit (every other, ...): all of them ran into
        # each other on a laptop-sized panel.
        self.source_axis = LabelAxis("bottom")
        self.plot = new_plot(self.ci, theme, row=0, col=0, x="source", y="generated", bottom_axis=self.source_axis)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=False, y=False)
        self.heatmap = Heatmap(self.plot, LEVELS, theme.sequential_map, bar_label="attention weight", ticks=3)
        self.heatmap.style(theme)
        self.heatmap.bar.axis.setWidth(32)  # "0.5" needs no more; pyqtgraph's 45 crowded a laptop's view
        self.plot.invertY(True)
        self.row_box = pg.QtWidgets.QGraphicsRectItem()
        self.row_box.setPen(pen(theme.accent, 3.5))
        self.row_box.setZValue(10)
        self.plot.addItem(self.row_box, ignoreBounds=True)
        self.hover_box = pg.QtWidgets.QGraphicsRectItem()
        self.hover_box.setPen(pen(theme.foreground, 1.5))
        self.hover_box.setZValue(11)
        self.plot.addItem(self.hover_box, ignoreBounds=True)
        self.hover_box.hide()
        self.message = message(self.plot, theme)
        self.readout = self.title = ""
        self.weights = np.zeros((0, 0))
        self.source: tuple[str, ...] = ()
        self.target: tuple[str, ...] = ()
        self.selected_row: int | None = None
        self.plot.scene().sigMouseMoved.connect(self._moved)

    def set(self, weights: np.ndarray | None, source: tuple[str, ...], target: tuple[str, ...],
            selected_row: int | None = None, explanation: str = "", title: str = "") -> None:
        """Show ``weights`` [len(target), len(source)]; None shows ``explanation`` instead."""
        self.title = title
        self._show_title(title)
        if weights is None or weights.size == 0:
            self.weights = np.zeros((0, 0))
            self.heatmap.clear()
            self.row_box.hide()
            self.source_axis.set_labels(())
            self.source_axis.setTicks([[]])
            self.plot.getAxis("left").setTicks([[]])
            self.message.setText(explanation)
            self.message.setPos(0.5, 0.5)
            self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.message.setVisible(bool(explanation))
            return
        self.message.hide()
        self.weights, self.source, self.target = np.asarray(weights), tuple(source), tuple(target)
        self.heatmap.set(self.weights)
        self.source_axis.setTicks(None)
        self.source_axis.set_labels(tuple(tick_text(s) for s in self.source))
        self.plot.getAxis("left").setTicks([[(j, tick_text(s)) for j, s in enumerate(self.target)]])
        self.select_row(selected_row)

    def select_row(self, row: int | None) -> None:
        """Outline the row of generated token ``row`` (None: no outline)."""
        self.selected_row = row
        rows, cols = self.weights.shape
        if row is None or not 0 <= row < rows:
            self.row_box.hide()
            return
        self.row_box.setRect(QRectF(-0.5, row - 0.5, cols, 1.0))
        self.row_box.show()

    def value_at(self, row: int, col: int) -> str:
        return (f"{tick_text(self.target[row])!r} (output {row + 1}) ← {tick_text(self.source[col])!r} "
                f"(source {col + 1}): {self.weights[row, col]:.3f}")

    def _show_title(self, text: str) -> None:
        """``text``, or its part before ": " when the whole does not fit the plot's width."""
        if text:
            from PySide6.QtGui import QFontMetricsF

            metrics = QFontMetricsF(ui_font(FONT_POINTS + 1))
            # the view's width less the axes and colour bar (the plot itself grows to hold a long title)
            room = self.width() - (self.ci.width() - self.plot.vb.width()) - 16
            head = text.split(": ")[0]
            for variant in (text, head, head.removeprefix("Attention of ")):
                text = variant
                if metrics.horizontalAdvance(variant) + 12 <= room:
                    break
        self.plot.setTitle(text or None, color=self.theme.foreground, size=f"{FONT_POINTS + 1}pt")

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        if hasattr(self, "plot"):  # (pyqtgraph resizes it while it is being made)
            self._show_title(self.readout or self.title)

    def _moved(self, scene_pos) -> None:
        rows, cols = self.weights.shape
        vb = self.plot.vb
        p = vb.mapSceneToView(scene_pos)
        col, row = int(round(p.x())), int(round(p.y()))
        inside = rows and vb.sceneBoundingRect().contains(scene_pos) and 0 <= row < rows and 0 <= col < cols
        if not inside:
            if self.hover_box.isVisible():
                self.hover_box.hide()
                self.readout = ""
                self.setToolTip("")
                self._show_title(self.title)
            return
        self.readout = self.value_at(row, col)
        self.hover_box.setRect(QRectF(col - 0.5, row - 0.5, 1.0, 1.0))
        self.hover_box.show()
        self.setToolTip(self.readout)
        self._show_title(self.readout)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.heatmap.set_colormap(theme.sequential_map)
        self.heatmap.style(theme)
        self.row_box.setPen(pen(theme.accent, 3.5))
        self.hover_box.setPen(pen(theme.foreground, 1.5))
        self.message.setColor(theme.muted)
