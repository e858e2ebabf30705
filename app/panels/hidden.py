"""Hidden state panel: h_t of every unit over the probe sequence, and chosen units' traces.

The heatmap is units x time with the probe's inputs along the time axis. Padded time steps
are shaded in both plots and named "padding" above the heatmap (not inside it, where the
label would cover units' rows); with masking on, the state is held through them. The
"masking off" toggle shows the same probe run without the mask, so the user sees padding
leak into the state. Click a unit's row to plot its trace (shift-click adds up to four).

A bidirectional encoder shows both directions as two halves of one heatmap: the forward
units first (their h_t has read the input up to t), then, above the line, the backward units
(their h_t has read it from the end down to t), so the time axis is the same for both.
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
        self.halves = pg.InfiniteLine(angle=0, movable=False, pen=pen(t.foreground, 2),
                                      label="▼ forward   ▲ backward", labelOpts={"position": 0.98, "color": t.foreground,
                                                                              "anchors": [(1, 1), (1, 1)]})
        self.halves.setZValue(16)
        self.halves.hide()
        self.map_plot.addItem(self.halves, ignoreBounds=True)
        self.add_cursor(self.map_plot)
        self.add_cursor(self.trace_plot)
        self.empty = message(self.map_plot, t)
        self.map_plot.scene().sigMouseClicked.connect(self._clicked)

    # -- data -----------------------------------------------------------------------------------
    def clear(self) -> None:
        self.probe = None
        self.units = [0]
        self._legend_units = ()  # a new run may name its units differently (bidirectional)
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
        """[T, H] of the chosen layer, masked or not ([T, 2H] when bidirectional: forward
        units, then backward)."""
        p = self.probe
        if p is None:
            return None
        layer = min(self._layer_index(), len(p.hidden) - 1)
        if self.unmasked.isChecked() and p.unmasked_hidden is not None:
            return both_halves(p.unmasked_hidden, p.backward and p.backward.unmasked_hidden, layer)
        return both_halves(p.hidden, p.backward and p.backward.hidden, layer)

    def _unit_name(self, u: int) -> str:
        p = self.probe
        if p is None or not p.bidirectional:
            return f"unit {u}"
        H = p.hidden[0].shape[1]
        return f"unit {u} (forward)" if u < H else f"unit {u - H} (backward)"

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
        if p.backward is not None:  # the backward direction, named as torch names its weights
            for name, arrays in (("hidden", p.backward.hidden), ("unmasked_hidden", p.backward.unmasked_hidden),
                                 ("cell", p.backward.cell)):
                for i, a in enumerate(arrays or ()):
                    out[f"{name}_l{i}_reverse"] = a.copy()
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
        cell = both_halves(p.cell, p.backward and p.backward.cell, self._layer_index()) if p.cell else None
        if p.bidirectional:
            self.halves.setValue(p.hidden[0].shape[1] - 0.5)
        self.halves.setVisible(p.bidirectional)
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
        half = p.hidden[0].shape[1]
        both = (f"bidirectional: units 0-{half - 1} forward, {half}-{2 * half - 1} backward"
                if p.bidirectional else "")
        self.note.setText("  ·  ".join(x for x in (f"step {p.step}", pad, mode, both, extra) if x))

    def _legend(self) -> None:
        if tuple(self.units) == self._legend_units:  # legends are slow to rebuild: only on change
            return
        self._legend_units = tuple(self.units)
        legend = self.trace_plot.legend
        legend.clear()
        for trace, u in zip(self.traces, self.units, strict=False):
            legend.addItem(trace, self._unit_name(u))

    def _clicked(self, event) -> None:
        if self.probe is None or event.button() != Qt.LeftButton:
            return
        vb = self.map_plot.vb
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        point = vb.mapSceneToView(event.scenePos())
        H = self._hidden().shape[1]
        unit = int(round(point.y()))
        if 0 <= unit < H:
            self.select_unit(unit, add=bool(event.modifiers() & Qt.ShiftModifier))

    def on_theme(self, theme: Theme) -> None:
        for shading in self.shading:
            shading.set_color(theme.padding)
        self.heatmap.set_colormap(theme.diverging_map)
        self.halves.setPen(pen(theme.foreground, 2))
        self.halves.label.setColor(theme.foreground)


def both_halves(forward: tuple[np.ndarray, ...], backward: tuple[np.ndarray, ...] | None,
                layer: int) -> np.ndarray:
    """Layer ``layer``'s [T, H] array, or [T, 2H] (forward units, then backward) when there
    is a backward direction."""
    layer = min(layer, len(forward) - 1)
    if backward is None:
        return forward[layer]
    return np.concatenate([forward[layer], backward[layer]], axis=1)
