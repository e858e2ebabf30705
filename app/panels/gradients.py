"""Gradients through time: how much of the loss's gradient reaches each time step.

Top: ||dL/dh_t|| against t on a log axis, per layer (the top layer drawn boldest); for an
LSTM also ||dL/dc_t|| (the cell state, the constant error carousel); with truncated BPTT
also the full-BPTT curve on the same weights, with alternate chunks shaded (no gradient
crosses a chunk boundary in training). A constant per-step rate is a straight line on a log
axis, so geometric lines are drawn from the last step backwards:

* dashed: the factor measured on the curve (only where the loss is at the last step: a loss
  at every step sums paths from every later loss, and no single rate fits the curve);
* dotted: the Jacobian-product rate, the finite-time Lyapunov exponent of the backward
  product of step Jacobians along the probe's trajectory (the rate the theory gives);
* dash-dot (tanh/relu RNN): the Pascanu bound sigma_max(W_hh) * gamma, an upper bound on
  every step's factor.
The mean-field estimate rho(W_hh) * rms(phi') (valid for random weights) is named in the
note and exported, not drawn.

Bottom: the top layer's ||dL/dh_t|| as a heatmap over training (one row per gradient
snapshot, oldest at the bottom), and for an LSTM a second row of the same for ||dL/dc_t||.

At laptop size the panel has ~250 px for all this: the curves come first (``NORM_MIN``),
the heatmap rows shrink first, only the lowest row carries the t axis, and a c_t row with
no room left is hidden and the note says so (``_fit_rows``).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from app.panels.analysis import (
    chunk_spans,
    geometric_line,
    log_levels,
    positive_for_log,
    row_heights,
    safe_log10,
)
from app.panels.axes import LogAxis, StepAxis, TimeAxis
from app.panels.base import Panel
from app.panels.legends import add_legend
from app.panels.plots import Heatmap, Shading, fit_label, fit_left_axes, message, new_plot, pen
from app.panels.series import Snapshots
from app.theme import OKABE_ITO, SERIES, Theme, cell_color
from core.records import GradientRecord

NOT_AVAILABLE = "not available for this task (sequence-to-sequence models have no probe gradients)"
CELL_COLOR = OKABE_ITO["green"]
RATE_COLOR = OKABE_ITO["purple"]  # the Jacobian-product rate: apart from the curves' colours
NORM_MIN = 64.0  # pixels of view box the curves and rate lines keep, whatever the panel's size
HEATMAP_MIN = 26.0  # pixels of view box a heatmap row needs to be read (two step labels, "c_t")
WEIGHTS = (4.0, 2.0, 2.0)  # the rows' shares of a panel with room to spare: half to the curves
CELL_HIDDEN = "c_t row hidden: no room (enlarge the panel)"


def _number(value: float | None) -> np.ndarray:
    """A rate as a 0-d array for export (nan when not drawn or not applicable)."""
    return np.array(float("nan") if value is None else float(value))


class GradientsPanel(Panel):
    name = "gradients"
    title = "Gradients through time"
    draws = frozenset({GradientRecord})
    instruments = frozenset({"gradients"})

    def build(self) -> None:
        t = self.theme
        view = self.view = self.add_view(pg.GraphicsLayoutWidget())
        self.norm_plot = new_plot(view.ci, t, row=0, col=0, y="‖∂L/∂h<sub>t</sub>‖", left_axis=LogAxis("left"))
        self.norm_plot.setLogMode(y=True)
        self.norm_plot.getAxis("bottom").setStyle(showValues=False)
        add_legend(self.norm_plot, offset=(10, 5), colCount=4)  # layers, c_t, full BPTT
        self.curves: list[pg.PlotDataItem] = []
        self.cell_curve = pg.PlotDataItem(pen=pen(CELL_COLOR, 2.0))
        self.full_curve = pg.PlotDataItem(pen=pen(t.muted, 1.5))
        for curve in (self.cell_curve, self.full_curve):
            self.norm_plot.addItem(curve)
            curve.hide()
        self._legend_extra: tuple[str, ...] = ()
        # The geometric lines do not set the axis range: a bound of 1.6 over 100 steps would
        # otherwise squash the measured curve into the bottom of the plot.
        self.measured = pg.PlotDataItem(pen=pen(t.muted, 1.5, Qt.DashLine))
        self.lyapunov = pg.PlotDataItem(pen=pen(RATE_COLOR, 2.2, Qt.DotLine))
        self.bound = pg.PlotDataItem(pen=pen(t.foreground, 1.2, Qt.DashDotLine))
        for line in (self.measured, self.lyapunov, self.bound):
            self.norm_plot.addItem(line, ignoreBounds=True)
            line.hide()
        self.chunks = Shading(self.norm_plot, t.chunk)
        self._manual_y = False  # the user zoomed: the y range stays theirs until the next run
        self.norm_plot.vb.sigRangeChangedManually.connect(self._zoomed)
        self.add_cursor(self.norm_plot)
        self.empty = message(self.norm_plot, t)
        self.step_axis = StepAxis("left")
        self.history_plot = new_plot(view.ci, t, row=1, col=0, x="time step t", y="step (h<sub>t</sub>)",
                                     left_axis=self.step_axis, bottom_axis=TimeAxis("bottom"))
        self.history_plot.setXLink(self.norm_plot)
        self.history = self.add_heatmap(Heatmap(self.history_plot, (-6.0, 0.0), t.magnitude_map,
                                                bar_label="log₁₀ ‖∂L/∂h<sub>t</sub>‖", ticks=6))
        self.history_chunks = Shading(self.history_plot, t.chunk)
        self.add_cursor(self.history_plot)
        # The LSTM's cell state: its own heatmap row, shown only for an LSTM.
        self.cell_step_axis = StepAxis("left")
        self.cell_plot = new_plot(view.ci, t, row=2, col=0, x="time step t", y="step (c<sub>t</sub>)",
                                  left_axis=self.cell_step_axis, bottom_axis=TimeAxis("bottom"))
        self.cell_plot.setXLink(self.norm_plot)
        # Short, each row still says which state it is: "step" alone named neither.
        fit_label(self.step_axis, ["step (h<sub>t</sub>)", "h<sub>t</sub>"])
        fit_label(self.cell_step_axis, ["step (c<sub>t</sub>)", "c<sub>t</sub>"])
        # No colour bar of its own: it shares the h row's levels, so the colours compare.
        self.cell_history = self.add_heatmap(Heatmap(self.cell_plot, (-6.0, 0.0), t.magnitude_map, bar=False))
        self.add_cursor(self.cell_plot)
        self.history.share_width(self.norm_plot, self.cell_plot)  # so t lines up between the plots
        fit_left_axes(self.norm_plot, self.history_plot, self.cell_plot)  # room for "0.0001"
        view.ci.layout.setContentsMargins(4, 4, 4, 4)  # the rows' pixels, not margins, at laptop size
        view.ci.layout.setVerticalSpacing(3)
        self._cell_wanted = self._cell_row = True
        self._heat_row = True  # the heatmap rows (h_t, and c_t for an LSTM): none for a seq2seq model
        self._cell_squeezed = False
        self._sizing = False
        self.record: GradientRecord | None = None
        view.sigDeviceRangeChanged.connect(self._fit_rows)  # (on the view's every resize)
        for plot in (self.norm_plot, self.history_plot, self.cell_plot):
            # an axis learns its labels' height when first drawn, and takes it from its view box
            plot.vb.sigResized.connect(self._fit_rows)
        self._show_cell_row(False)
        self._T = 0
        self.snapshots = Snapshots(limit=400)
        self.cell_snapshots = Snapshots(limit=400)

    # -- data --------------------------------------------------------------------------------
    def clear(self) -> None:
        self.record = None
        self.snapshots.clear()
        self.cell_snapshots.clear()
        self.history.clear()
        self.cell_history.clear()
        self.step_axis.set_steps(np.zeros(0, dtype=np.int64))
        self.cell_step_axis.set_steps(np.zeros(0, dtype=np.int64))
        self._T = 0
        self.note.setText("")
        # A seq2seq model has no probe gradients: the panel is its message alone, no heatmap
        # rows, colour bar or time cursor left from the run before (issue 14: a real window
        # showed the previous preset's h_t heatmap under "not available").
        available = not self._seq2seq()
        if not available:
            self._forget_curves()
        self._heat_row = available
        self.history_plot.setVisible(available)
        for line in self.cursors:
            line.setVisible(available)
        self._show_cell_row(self.run is not None and self.run.kind == "lstm" and available)
        self._manual_y = False

    def _forget_curves(self) -> None:
        """No curve and no legend entry of the last run (its curves are made again for the
        next run's layers at its first record; a hidden curve's entry drew a struck-out icon)."""
        for curve in self.curves:
            self.norm_plot.removeItem(curve)
        self.curves = []
        self.norm_plot.legend.clear()
        self._legend_extra = ()

    def _zoomed(self, *_) -> None:
        self._manual_y = True

    def _seq2seq(self) -> bool:
        return self.run is not None and self.run.experiment.is_seq2seq

    def on_gradients(self, record: GradientRecord) -> None:
        self.record = record
        self.snapshots.append(record.step, safe_log10(record.norms[-1]))
        if record.cell_norms is not None:
            self.cell_snapshots.append(record.step, safe_log10(record.cell_norms[-1]))

    def export_data(self) -> dict[str, np.ndarray]:
        r = self.record
        if r is None:
            return {}
        out = {"t": np.arange(len(r.norms[-1])), "jacobian": r.jacobian.copy(),
               "history_log10_norm": self.snapshots.image(), "history_steps": self.snapshots.steps()}
        for i, n in enumerate(r.norms):
            out[f"norm_l{i}"] = n.copy()
        if r.cell_norms is not None:
            for i, n in enumerate(r.cell_norms):
                out[f"cell_norm_l{i}"] = n.copy()
            out["history_log10_cell_norm"] = self.cell_snapshots.image()
        if r.full_norms is not None:
            for i, n in enumerate(r.full_norms):
                out[f"full_bptt_norm_l{i}"] = n.copy()
        drawn = self._drawn_rates(r)
        out["measured_factor"] = _number(drawn["measured_factor"])
        out["lyapunov_rate"] = _number(r.lyapunov_rate)
        out["pascanu_bound"] = _number(r.pascanu_bound)
        out["mean_field_estimate"] = _number(r.mean_field)
        return out

    def histories(self) -> dict[str, np.ndarray]:
        out = {"steps": self.snapshots.steps(), "log10_norms": self.snapshots.image()}
        if len(self.cell_snapshots.steps()):
            out.update(cell_steps=self.cell_snapshots.steps(), log10_cell_norms=self.cell_snapshots.image())
        return out

    def restore_histories(self, arrays: dict[str, np.ndarray]) -> None:
        up_to = self.run.step if self.run else None
        if "steps" in arrays:
            self.snapshots.load(arrays["steps"], arrays.get("log10_norms", np.zeros((0, 0))), up_to=up_to)
        if "cell_steps" in arrays:
            self.cell_snapshots.load(arrays["cell_steps"], arrays.get("log10_cell_norms", np.zeros((0, 0))),
                                     up_to=up_to)
        if "steps" in arrays or "cell_steps" in arrays:
            self.invalidate()

    @staticmethod
    def _drawn_rates(r: GradientRecord) -> dict[str, float | None]:
        """The rates drawn as geometric lines (None where not drawn)."""
        def finite(v):
            return v if v is not None and math.isfinite(v) else None

        # A loss at every step: the curve is no geometric line, so none is drawn over it
        # (the note still gives the Jacobian-product rate).
        last = not r.loss_every_step
        return {"measured_factor": finite(r.factor) if last else None,
                "lyapunov_rate": finite(r.lyapunov_rate) if last else None,
                "pascanu_bound": finite(r.pascanu_bound) if last else None}

    # -- drawing -----------------------------------------------------------------------------
    def _show_cell_row(self, show: bool) -> None:
        """Whether the run has a cell-state row to show (an LSTM); ``_fit_rows`` shows it
        when it fits."""
        self._cell_wanted = show
        self._fit_rows()

    def _fit_rows(self, *_) -> None:
        """Give the rows fixed heights for the view's height: the curves first (at least
        ``NORM_MIN`` of view box), then the heatmaps (``HEATMAP_MIN`` each); a c_t row with
        no room is hidden (a hidden item would keep its space) and the note says so. Only
        the lowest row shows the t axis's labels: the rows are x-linked, one scale serves."""
        if self._sizing:
            return
        self._sizing = True
        try:
            layout = self.view.ci.layout
            left, top, right, bottom = layout.getContentsMargins()
            room = self.view.range.height() - top - bottom  # (not the layout's: it follows these)
            cell = self._cell_wanted
            self._set_cell_row(cell)  # shown while measured: a hidden axis has no height
            heights = self._heights(room, cell)
            if heights is None and cell:
                cell = False
                self._set_cell_row(cell)
                heights = self._heights(room, cell)
            if heights is None:  # the curves still first: the h row shrinks below its minimum
                heights = self._heights(room, cell, heatmap_min=0.0)
            self._cell_squeezed = self._cell_wanted and not cell
            plots = (self.norm_plot, self.history_plot, self.cell_plot)
            for plot, height in zip(plots, heights or (), strict=False):
                plot.setMinimumHeight(max(height, 0.0))
                plot.setMaximumHeight(max(height, 0.0))
            if heights is None:  # (a view smaller than the curves need: Qt shares it out)
                for plot in plots[:1 + self._heat_row]:
                    plot.setMinimumHeight(0)
                    plot.setMaximumHeight(1e6)
            # laid out now, not on a later event: a caller (an export, a test) reads the rows at once
            self.view.ci.setGeometry(self.view.range)
            self.view.ci.layout.activate()
            for plot in plots:
                plot.layout.activate()
        finally:
            self._sizing = False
        if self.record is not None:
            self._set_note(self.record)

    def _heights(self, room: float, cell: bool, heatmap_min: float = HEATMAP_MIN) -> list[float] | None:
        """Row heights (curves, h if the heatmaps show, and c_t if ``cell``) for ``room``
        pixels, spacing taken off."""
        rows = 1 + self._heat_row + (cell and self._heat_row)
        room -= self.view.ci.layout.verticalSpacing() * (rows - 1)
        self._axis_on(self.history_plot, rows == 2)
        self._axis_on(self.cell_plot, rows == 3)
        chrome = [self._chrome(plot) for plot in (self.norm_plot, self.history_plot, self.cell_plot)][:rows]
        # shared out as view-box pixels, so the h and c_t rows show their data at one size
        boxes = row_heights(room - sum(chrome), [NORM_MIN, heatmap_min, heatmap_min][:rows], list(WEIGHTS[:rows]))
        if boxes is None:
            return None
        return [c + b for c, b in zip(chrome, boxes, strict=True)] + [0.0] * (3 - rows)

    @staticmethod
    def _chrome(plot: pg.PlotItem) -> float:
        """Pixels of ``plot``'s height not its view box's: the legend row and the t axis."""
        return plot.layout.effectiveSizeHint(Qt.MinimumSize).height() - plot.vb.effectiveSizeHint(
            Qt.MinimumSize).height()

    @staticmethod
    def _axis_on(plot: pg.PlotItem, on: bool) -> None:
        """The t axis's labels and name under ``plot`` (on the lowest row only)."""
        axis = plot.getAxis("bottom")
        axis.setStyle(showValues=on)  # (and its height again: pyqtgraph gives a hidden axis none)
        if axis.label.isVisibleTo(axis) != on:  # (isVisible is False in a hidden row)
            axis.showLabel(on)
            if on:
                axis.fit_label()
        plot.layout.invalidate()  # its size hints follow the axis's new height now, not on the next paint

    def _set_cell_row(self, show: bool) -> None:
        if show == self._cell_row:
            return
        self._cell_row = show
        if not show:
            self.cell_plot.setMinimumHeight(0)
            self.cell_plot.setMaximumHeight(0)
        self.cell_plot.setVisible(show)

    def _hide_all(self, text: str) -> None:
        self.empty.setText(text)
        self.empty.show()
        for item in (*self.curves, self.cell_curve, self.full_curve, self.measured, self.lyapunov, self.bound):
            item.hide()
        self.chunks.set_spans([])
        self.history_chunks.set_spans([])
        # (the reason once: the message says it, and the note names the step it applies to)
        self.note.setText("")

    def redraw(self) -> None:
        r = self.record
        if r is None or self._seq2seq():
            self._hide_all(NOT_AVAILABLE if self._seq2seq() else "waiting for gradients…")
            return
        self.empty.hide()
        T = len(r.norms[-1])
        t = np.arange(T)
        self._ensure_curves(len(r.norms))
        for i, curve in enumerate(self.curves):
            curve.setData(t, positive_for_log(r.norms[i]), connect="finite")
            curve.show()  # a record without data hid it (the issue 14 bug): show it again
        self._extra(self.cell_curve, r.cell_norms, t)
        self._extra(self.full_curve, r.full_norms, t)
        self._update_legend(r)
        top = r.norms[-1]
        rates = self._drawn_rates(r)
        self._geometric(self.measured, top, rates["measured_factor"], t)
        self._geometric(self.lyapunov, top, rates["lyapunov_rate"], t)
        self._geometric(self.bound, top, rates["pascanu_bound"], t)
        spans = chunk_spans(T, r.truncate)
        self.chunks.set_spans(spans)
        self.history_chunks.set_spans(spans)
        image = self.snapshots.image()  # [T, n]
        cells = self.cell_snapshots.image()
        self._show_cell_row(r.cell_norms is not None)
        both = np.concatenate([image, cells], axis=1) if r.cell_norms is not None and cells.size else image
        if image.size:
            self.history.set(image.T, levels=log_levels(both))
            self.step_axis.set_steps(self.snapshots.steps())
        if r.cell_norms is not None and cells.size:
            self.cell_history.set(cells.T, levels=log_levels(both))
            self.cell_step_axis.set_steps(self.cell_snapshots.steps())
        if self._T != T:
            self._T = T
            self.norm_plot.setXRange(-0.5, T - 0.5, padding=0)
        self._fit_y(r)
        self._set_note(r)

    def _set_note(self, r: GradientRecord) -> None:
        if self._seq2seq():
            return
        parts = self._note_parts(r, self._drawn_rates(r))
        self.note.setText("  ·  ".join(parts + ([CELL_HIDDEN] if self._cell_squeezed else [])))

    def _fit_y(self, r: GradientRecord) -> None:
        """The y range spans the drawn curves (log10 units), set here rather than left to
        pyqtgraph's auto-range, which kept the last run's range after a switch (issue 14)."""
        if self._manual_y:
            return
        rows = [*r.norms, *(r.cell_norms or ()), *(r.full_norms or ())]
        logs = safe_log10(np.concatenate(rows)) if rows else np.array([])
        logs = logs[np.isfinite(logs)]
        if logs.size:
            lo, hi = float(logs.min()), float(logs.max())
            if hi - lo < 0.5:
                lo, hi = lo - 0.25, hi + 0.25
            self.norm_plot.setYRange(lo, hi, padding=0.05)

    @staticmethod
    def _note_parts(r: GradientRecord, rates: dict[str, float | None]) -> list[str]:
        parts = [f"step {r.step}"]
        if r.loss_every_step:
            parts.append("loss at every step: no single factor fits ‖∂L/∂h_t‖")
        elif rates["measured_factor"] is not None:
            parts.append(f"measured factor {rates['measured_factor']:.3f} (dashed)")
        if rates["lyapunov_rate"] is not None:
            parts.append(f"Jacobian-product rate {rates['lyapunov_rate']:.3f} (dotted)")
        elif math.isfinite(r.lyapunov_rate):
            parts.append(f"Jacobian-product rate {r.lyapunov_rate:.3f}")
        if rates["pascanu_bound"] is not None:
            parts.append(f"Pascanu bound σ_max·γ {rates['pascanu_bound']:.3g} (dash-dot)")
        if r.mean_field is not None and math.isfinite(r.mean_field):
            parts.append(f"mean-field estimate (random weights) {r.mean_field:.3g}")
        if r.truncate:
            parts.append(f"truncated every {r.truncate} steps")
        if r.note:
            parts.append(r.note)
        return parts

    def _extra(self, curve: pg.PlotDataItem, norms: tuple[np.ndarray, ...] | None, t: np.ndarray) -> None:
        if norms is None:
            curve.hide()
            return
        curve.setData(t, positive_for_log(norms[-1]), connect="finite")
        curve.show()

    def _update_legend(self, r: GradientRecord) -> None:
        extra = (("‖∂L/∂c_t‖ (cell state)",) if r.cell_norms is not None else ()) + \
                (("full BPTT",) if r.full_norms is not None else ())
        if extra == self._legend_extra:
            return
        self._legend_extra = extra
        legend = self.norm_plot.legend
        legend.removeItem(self.cell_curve)
        legend.removeItem(self.full_curve)
        if len(self.curves) == 1:  # one layer: named only beside another curve
            legend.removeItem(self.curves[0])
            if extra:
                legend.addItem(self.curves[0], "‖∂L/∂h_t‖" + (" (truncated)" if r.full_norms is not None else ""))
        if r.cell_norms is not None:
            legend.addItem(self.cell_curve, extra[0])
        if r.full_norms is not None:
            legend.addItem(self.full_curve, "full BPTT")

    def _ensure_curves(self, layers: int) -> None:
        if len(self.curves) == layers:
            return
        for curve in self.curves:
            self.norm_plot.removeItem(curve)
        kind = self.run.kind if self.run else "lstm"
        self.curves = []
        self._legend_extra = ()  # the legend is rebuilt in order: layers first
        self.norm_plot.legend.removeItem(self.cell_curve)
        self.norm_plot.legend.removeItem(self.full_curve)
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
        self.lyapunov.setPen(pen(RATE_COLOR, 2.2, Qt.DotLine))
        self.bound.setPen(pen(theme.foreground, 1.2, Qt.DashDotLine))
        self.full_curve.setPen(pen(theme.muted, 1.5))
        self.chunks.set_color(theme.chunk)
        self.history_chunks.set_color(theme.chunk)
        self.history.set_colormap(theme.magnitude_map)
        self.cell_history.set_colormap(theme.magnitude_map)
