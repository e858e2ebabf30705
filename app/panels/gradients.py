"""Gradients through time: how much of the loss's gradient reaches each time step.

Top: ||dL/dh_t|| against t on a log axis, per layer (the top layer drawn boldest). A
constant per-step factor makes this a straight line on a log axis, so two geometric lines
are overlaid from the last step backwards: the factor measured on the curve, and the factor
predicted from the recurrent weights' spectrum. With truncated BPTT, alternate chunks are
shaded: no gradient crosses a chunk boundary.

Bottom: the same top-layer curve as a heatmap over training (one row per gradient snapshot,
oldest at the bottom), so vanishing or exploding gradients show as they develop.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from app.panels.analysis import (
    chunk_spans,
    geometric_line,
    log_levels,
    positive_for_log,
    safe_log10,
)
from app.panels.axes import LogAxis, StepAxis, TimeAxis
from app.panels.base import Panel
from app.panels.legends import add_legend
from app.panels.plots import Heatmap, Shading, fit_left_axes, message, new_plot, pen
from app.panels.series import Snapshots
from app.theme import SERIES, Theme, cell_color
from core.records import GradientRecord


class GradientsPanel(Panel):
    name = "gradients"
    title = "Gradients through time"
    draws = frozenset({GradientRecord})
    instruments = frozenset({"gradients"})

    def build(self) -> None:
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.norm_plot = new_plot(view.ci, t, row=0, col=0, y="‖∂L/∂h<sub>t</sub>‖", left_axis=LogAxis("left"))
        self.norm_plot.setLogMode(y=True)
        self.norm_plot.getAxis("bottom").setStyle(showValues=False)
        add_legend(self.norm_plot, offset=(10, 5), colCount=4)  # layers, when there are several
        self.curves: list[pg.PlotDataItem] = []
        # The geometric lines do not set the axis range: a predicted factor of 1.2 over 100
        # steps would otherwise squash the measured curve into the bottom of the plot.
        self.measured = pg.PlotDataItem(pen=pen(t.muted, 1.5, Qt.DashLine))
        self.predicted = pg.PlotDataItem(pen=pen(t.accent, 1.5, Qt.DotLine))
        for line in (self.measured, self.predicted):
            self.norm_plot.addItem(line, ignoreBounds=True)
        self.chunks = Shading(self.norm_plot, t.chunk)
        self.add_cursor(self.norm_plot)
        self.empty = message(self.norm_plot, t)
        self.step_axis = StepAxis("left")
        self.history_plot = new_plot(view.ci, t, row=1, col=0, x="time step t", y="step",
                                     left_axis=self.step_axis, bottom_axis=TimeAxis("bottom"))
        self.history_plot.setXLink(self.norm_plot)
        self.history = self.add_heatmap(Heatmap(self.history_plot, (-6.0, 0.0), t.magnitude_map,
                                                bar_label="log₁₀ ‖∂L/∂h<sub>t</sub>‖"))
        self.history.share_width(self.norm_plot)  # so t lines up between the two plots
        self.history_chunks = Shading(self.history_plot, t.chunk)
        self.add_cursor(self.history_plot)
        fit_left_axes(self.norm_plot, self.history_plot)  # room for "0.0001" and the label
        view.ci.layout.setRowStretchFactor(0, 3)
        view.ci.layout.setRowStretchFactor(1, 2)
        self.record: GradientRecord | None = None
        self._T = 0
        self.snapshots = Snapshots(limit=400)

    def clear(self) -> None:
        self.record = None
        self.snapshots.clear()
        self.history.clear()

    def on_gradients(self, record: GradientRecord) -> None:
        self.record = record
        self.snapshots.append(record.step, safe_log10(record.norms[-1]))

    def export_data(self) -> dict[str, np.ndarray]:
        r = self.record
        if r is None:
            return {}
        out = {"t": np.arange(len(r.norms[-1])), "jacobian": r.jacobian.copy(),
               "history_log10_norm": self.snapshots.image(), "history_steps": self.snapshots.steps()}
        for i, n in enumerate(r.norms):
            out[f"norm_l{i}"] = n.copy()
        return out

    def histories(self) -> dict[str, np.ndarray]:
        return {"steps": self.snapshots.steps(), "log10_norms": self.snapshots.image()}

    def restore_histories(self, arrays: dict[str, np.ndarray]) -> None:
        if "steps" in arrays:
            self.snapshots.load(arrays["steps"], arrays.get("log10_norms", np.zeros((0, 0))),
                                up_to=self.run.step if self.run else None)
            self.invalidate()

    def redraw(self) -> None:
        r = self.record
        seq2seq = self.run is not None and self.run.experiment.is_seq2seq
        if r is None:
            self.empty.setText("not shown for sequence-to-sequence tasks" if seq2seq
                               else "waiting for gradients…")
            self.empty.show()
            for curve in self.curves:
                curve.hide()
            return
        self.empty.hide()
        T = len(r.norms[-1])
        t = np.arange(T)
        self._ensure_curves(len(r.norms))
        for i, curve in enumerate(self.curves):
            curve.setData(t, positive_for_log(r.norms[i]), connect="finite")
        top = r.norms[-1]
        self._geometric(self.measured, top, r.factor, t)
        self._geometric(self.predicted, top, r.predicted, t)
        spans = chunk_spans(T, r.truncate)
        self.chunks.set_spans(spans)
        self.history_chunks.set_spans(spans)
        image = self.snapshots.image()  # [T, n]
        if image.size:
            self.history.set(image.T, levels=log_levels(image))
            self.step_axis.set_steps(self.snapshots.steps())
        if self._T != T:
            self._T = T
            self.norm_plot.setXRange(-0.5, T - 0.5, padding=0)
        parts = [f"step {r.step}", f"per-step factor: measured {r.factor:.3g} (dashed)"]
        if r.predicted is not None:
            parts.append(f"predicted from the spectrum {r.predicted:.3g} (dotted)")
        if r.truncate:
            parts.append(f"truncated every {r.truncate} steps")
        self.note.setText("  ·  ".join(parts))

    def _ensure_curves(self, layers: int) -> None:
        if len(self.curves) == layers:
            return
        for curve in self.curves:
            self.norm_plot.removeItem(curve)
        kind = self.run.kind if self.run else "lstm"
        self.curves = []
        for i in range(layers):
            top = i == layers - 1
            color = cell_color(kind) if top else SERIES[(i + 1) % len(SERIES)]
            name = f"layer {i}" if layers > 1 else None
            self.curves.append(self.norm_plot.plot(pen=pen(color, 2.5 if top else 1.2), name=name))

    def _geometric(self, item: pg.PlotDataItem, top: np.ndarray, factor: float | None, t: np.ndarray) -> None:
        end = float(top[-1]) if len(top) else 0.0
        line = geometric_line(end, factor, len(t))
        if line is None:
            item.hide()
            return
        item.setData(t, line, connect="finite")
        item.show()

    def on_theme(self, theme: Theme) -> None:
        self.measured.setPen(pen(theme.muted, 1.5, Qt.DashLine))
        self.predicted.setPen(pen(theme.accent, 1.5, Qt.DotLine))
        self.chunks.set_color(theme.chunk)
        self.history_chunks.set_color(theme.chunk)
        self.history.set_colormap(theme.magnitude_map)
