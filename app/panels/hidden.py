"""Hidden state panel: h_t of every unit over the probe sequence, and chosen units' traces.

The heatmap is units x time with the probe's inputs along the time axis. Padded time steps
are shaded in both plots and named "padding" above the heatmap (not inside it, where the
label would cover units' rows); with masking on, the state is held through them. The
"masking off" toggle shows the same probe run without the mask, so the user sees padding
leak into the state. Click a unit's row to plot its trace (shift-click adds up to four).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel

from app.panels.analysis import false_runs, most_active_unit
from app.panels.axes import LabelAxis, SpanLabelAxis, TimeAxis
from app.panels.base import Panel
from app.panels.legends import add_legend
from app.panels.plots import Heatmap, Shading, fit_left_axes, message, new_plot, pen
from app.theme import LEVELS, SERIES, Theme
from core.records import ProbeRecord

MAX_TRACES = 4


class HiddenPanel(Panel):
    name = "hidden"
    title = "Hidden state"
    draws = frozenset({ProbeRecord})
    instruments = frozenset({"probe"})
    min_height = 300  # the heatmap and the traces below it

    def build(self) -> None:
        self.layer_label = QLabel("Layer")
        self.layer = QComboBox()
        self.layer.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        self.unmasked = QCheckBox("Masking off (padding leaks in)")
        self.unmasked.setToolTip("Show the same probe run without masking: padded steps then change the state")
        self.unmasked.toggled.connect(lambda _: self.refresh(force=True))
        for w in (self.layer_label, self.layer, self.unmasked):
            self.options.addWidget(w)
        self.probe: ProbeRecord | None = None
        self.units: list[int] = [0]
        self._legend_units: tuple[int, ...] = ()
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.time_axis = LabelAxis("bottom")
        self.padding_axis = SpanLabelAxis("padding")
        self.map_plot = new_plot(view.ci, t, row=0, col=0, y="unit", bottom_axis=self.time_axis,
                                 top_axis=self.padding_axis)
        self.heatmap = self.add_heatmap(Heatmap(self.map_plot, LEVELS["signed"], t.diverging_map, "h"))
        self.trace_plot = new_plot(view.ci, t, row=1, col=0, x="time step t", y="h<sub>t</sub>",
                                   bottom_axis=TimeAxis("bottom"))  # t = 0 labelled with 100 steps too
        self.heatmap.share_width(self.trace_plot)  # so t lines up between the two plots
        self.trace_plot.setXLink(self.map_plot)
        self.trace_plot.setYRange(-1.05, 1.05, padding=0)
        add_legend(self.trace_plot, offset=(-10, 5), colCount=MAX_TRACES)
        fit_left_axes(self.map_plot, self.trace_plot)
        view.ci.layout.setRowStretchFactor(0, 3)
        view.ci.layout.setRowStretchFactor(1, 2)
        self.traces = [self.trace_plot.plot(pen=pen(SERIES[i % len(SERIES)])) for i in range(MAX_TRACES)]
        self.cell_traces = [self.trace_plot.plot(pen=pen(SERIES[i % len(SERIES)], 1.2, Qt.DashLine))
                            for i in range(MAX_TRACES)]
        self.rows = [pg.LinearRegionItem(orientation="horizontal", movable=False, brush=pg.mkBrush(None),
                                         pen=pen(SERIES[i % len(SERIES)], 2)) for i in range(MAX_TRACES)]
        for row in self.rows:
            row.setZValue(15)
            self.map_plot.addItem(row, ignoreBounds=True)
        self.shading = [Shading(p, t.padding) for p in (self.map_plot, self.trace_plot)]
        self.add_cursor(self.map_plot)
        self.add_cursor(self.trace_plot)
        self.empty = message(self.map_plot, t)
        self.map_plot.scene().sigMouseClicked.connect(self._clicked)

    # -- data -----------------------------------------------------------------------------------
    def clear(self) -> None:
        self.probe = None
        self.units = [0]
        # A view option of the old run: a new one starts masked, as its experiment says.
        self.unmasked.blockSignals(True)
        self.unmasked.setChecked(False)
        self.unmasked.blockSignals(False)
        self.heatmap.clear()
        for shading in self.shading:
            shading.set_spans([])
        self.padding_axis.set_spans([])
        self.map_plot.hideAxis("top")
        layers = self.run.num_layers if self.run else 1
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems([f"{i}" for i in range(layers)])
        self.layer.setCurrentIndex(layers - 1)
        self.layer.blockSignals(False)
        self.layer.setVisible(layers > 1)
        self.layer_label.setVisible(layers > 1)

    def on_probe(self, record: ProbeRecord) -> None:
        if self.probe is None and self.units == [0]:  # first probe of a run: start on a lively unit
            self.units = [most_active_unit(record.hidden[-1], record.valid)]
        self.probe = record

    def select_unit(self, unit: int, add: bool = False) -> None:
        """Plot unit ``unit``'s trace (``add`` keeps the others, up to four)."""
        units = [u for u in self.units if u != unit] if add else []
        self.units = (units + [unit])[-MAX_TRACES:]
        self.refresh(force=True)

    def _layer_index(self) -> int:
        return max(self.layer.currentIndex(), 0)

    def _hidden(self) -> np.ndarray | None:
        """[T, H] of the chosen layer, masked or not."""
        p = self.probe
        if p is None:
            return None
        layer = min(self._layer_index(), len(p.hidden) - 1)
        if self.unmasked.isChecked() and p.unmasked_hidden is not None:
            return p.unmasked_hidden[layer]
        return p.hidden[layer]

    def export_data(self) -> dict[str, np.ndarray]:
        p = self.probe
        if p is None:
            return {}
        out = {"t": np.arange(p.T), "valid": p.valid.copy(), "labels": np.array(p.labels)}
        for i, h in enumerate(p.hidden):
            out[f"hidden_l{i}"] = h.copy()
        for i, h in enumerate(p.unmasked_hidden or ()):
            out[f"unmasked_hidden_l{i}"] = h.copy()
        for i, c in enumerate(p.cell or ()):
            out[f"cell_l{i}"] = c.copy()
        return out

    # -- drawing --------------------------------------------------------------------------------
    def redraw(self) -> None:
        p, h = self.probe, self._hidden()
        self.unmasked.setEnabled(p is not None and p.unmasked_hidden is not None)
        if p is None or h is None:
            self.empty.setText("waiting for the probe sequence…")
            self.empty.show()
            return
        self.empty.hide()
        T, H = h.shape
        self.time_axis.set_labels(p.labels)
        self.heatmap.set(h.T)
        self.units = [u for u in self.units if u < H] or [0]
        cell = p.cell[min(self._layer_index(), len(p.cell) - 1)] if p.cell else None
        t = np.arange(T)
        for i, (trace, cell_trace, row) in enumerate(zip(self.traces, self.cell_traces, self.rows, strict=True)):
            if i < len(self.units):
                u = self.units[i]
                trace.setData(t, h[:, u])
                trace.show()
                row.setRegion((u - 0.5, u + 0.5))
                row.show()
                if cell is not None and not self.unmasked.isChecked():
                    cell_trace.setData(t, cell[:, u])
                    cell_trace.show()
                else:
                    cell_trace.hide()
            else:
                trace.hide()
                cell_trace.hide()
                row.hide()
        self._legend()
        padded = false_runs(p.valid)
        for shading in self.shading:
            shading.set_spans(padded)
        self.padding_axis.set_spans(padded)
        if self.padding_axis.isVisibleTo(self.map_plot) != bool(padded):  # each show re-lays out the plot
            self.map_plot.showAxis("top", bool(padded))
        mode = "masking off" if self.unmasked.isChecked() and p.unmasked_hidden is not None else ""
        pad = f"{int((~p.valid).sum())} padded steps" if padded else ""
        extra = "dashed: cell state c_t" if cell is not None and not mode else ""
        self.note.setText("  ·  ".join(x for x in (f"step {p.step}", pad, mode, extra) if x))

    def _legend(self) -> None:
        if tuple(self.units) == self._legend_units:  # legends are slow to rebuild: only on change
            return
        self._legend_units = tuple(self.units)
        legend = self.trace_plot.legend
        legend.clear()
        for trace, u in zip(self.traces, self.units, strict=False):
            legend.addItem(trace, f"unit {u}")

    def _clicked(self, event) -> None:
        if self.probe is None or event.button() != Qt.LeftButton:
            return
        vb = self.map_plot.vb
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        point = vb.mapSceneToView(event.scenePos())
        H = self.probe.hidden[0].shape[1]
        unit = int(round(point.y()))
        if 0 <= unit < H:
            self.select_unit(unit, add=bool(event.modifiers() & Qt.ShiftModifier))

    def on_theme(self, theme: Theme) -> None:
        for shading in self.shading:
            shading.set_color(theme.padding)
        self.heatmap.set_colormap(theme.diverging_map)
