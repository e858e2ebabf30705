"""Hidden state panel: h_t of every unit over the probe sequence, and chosen units' traces.

The heatmap is units x time with the probe's inputs along the time axis. Padded time steps
are shaded in both plots and named "padding" above the heatmap (not inside it, where the
label would cover units' rows); with masking on, the state is held through them. The
"masking off" toggle shows the same probe run without the mask, so the user sees padding
leak into the state. Click a unit's row to plot its trace (shift-click adds up to four).

A bidirectional encoder shows both directions as two halves of one heatmap: the forward
units first (their h_t has read the input up to t), then, above the line, the backward units
(their h_t has read it from the end down to t), so the time axis is the same for both.

What if: right-click a unit's row to zero, clamp or add to its h from that time step on
(app.panels.what_if). While interventions are on, the counterfactual run is drawn under the
factual one (or as the difference, counterfactual minus factual), the edited units and steps
outlined, and each chosen unit's counterfactual trace is dashed beside its factual one.
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
from app.panels.what_if import VIEWS, Outlines, Target, WhatIfActions, edited_boxes, loss_text
from app.theme import LEVELS, SERIES, Theme
from core.records import CounterfactualRecord, ProbeRecord

MAX_TRACES = 4


class HiddenPanel(Panel):
    name = "hidden"
    title = "Hidden state"
    draws = frozenset({ProbeRecord, CounterfactualRecord})
    instruments = frozenset({"probe", "counterfactual"})
    min_height = 300  # the heatmap and the traces below it

    def build(self) -> None:
        self.layer_label = QLabel("Layer")
        self.layer = QComboBox()
        self.layer.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        self.unmasked = QCheckBox("Masking off (padding leaks in)")
        self.unmasked.setToolTip("Show the same probe run without masking: padded steps then change the state")
        self.unmasked.toggled.connect(lambda _: self.refresh(force=True))
        self.view_label = QLabel("What if")
        self.what_if_view = QComboBox()
        self.what_if_view.addItems(VIEWS)
        self.what_if_view.setToolTip("The counterfactual run beside (under) the factual one, or their difference")
        self.what_if_view.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        for w in (self.layer_label, self.layer, self.unmasked, self.view_label, self.what_if_view):
            self.options.addWidget(w)
        self.probe: ProbeRecord | None = None
        self.counterfactual: CounterfactualRecord | None = None
        self.units: list[int] = [0]
        self._legend_units: tuple[int, ...] = ()
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.time_axis = LabelAxis("bottom")
        self.padding_axis = SpanLabelAxis("padding")
        self.map_plot = new_plot(view.ci, t, row=0, col=0, y="unit", bottom_axis=self.time_axis,
                                 top_axis=self.padding_axis)
        self.heatmap = self.add_heatmap(Heatmap(self.map_plot, LEVELS["signed"], t.diverging_map, "h"))
        self.what_if_axis = LabelAxis("bottom")
        self.what_if_plot = new_plot(view.ci, t, row=1, col=0, y="what if", bottom_axis=self.what_if_axis)
        self.what_if_map = self.add_heatmap(Heatmap(self.what_if_plot, LEVELS["signed"], t.diverging_map, "h"))
        self.outlines = Outlines(self.what_if_plot, t.foreground)
        self.trace_plot = new_plot(view.ci, t, row=2, col=0, x="time step t", y="h<sub>t</sub>",
                                   bottom_axis=TimeAxis("bottom"))  # t = 0 labelled with 100 steps too
        self.heatmap.share_width(self.trace_plot)  # so t lines up between the two plots
        self.what_if_plot.setXLink(self.map_plot)
        self.trace_plot.setXLink(self.map_plot)
        self.trace_plot.setYRange(-1.05, 1.05, padding=0)
        add_legend(self.trace_plot, offset=(-10, 5), colCount=MAX_TRACES)
        fit_left_axes(self.map_plot, self.what_if_plot, self.trace_plot)
        view.ci.layout.setRowStretchFactor(0, 3)
        view.ci.layout.setRowStretchFactor(1, 3)
        view.ci.layout.setRowStretchFactor(2, 2)
        self.traces = [self.trace_plot.plot(pen=pen(SERIES[i % len(SERIES)])) for i in range(MAX_TRACES)]
        self.cell_traces = [self.trace_plot.plot(pen=pen(SERIES[i % len(SERIES)], 1.2, Qt.DashLine))
                            for i in range(MAX_TRACES)]
        self.what_if_traces = [self.trace_plot.plot(pen=pen(SERIES[i % len(SERIES)], 2.0, Qt.DashLine))
                               for i in range(MAX_TRACES)]
        self.rows = [pg.LinearRegionItem(orientation="horizontal", movable=False, brush=pg.mkBrush(None),
                                         pen=pen(SERIES[i % len(SERIES)], 2)) for i in range(MAX_TRACES)]
        for row in self.rows:
            row.setZValue(15)
            self.map_plot.addItem(row, ignoreBounds=True)
        self.shading = [Shading(p, t.padding) for p in (self.map_plot, self.what_if_plot, self.trace_plot)]
        self.halves = pg.InfiniteLine(angle=0, movable=False, pen=pen(t.foreground, 2),
                                      label="▼ forward   ▲ backward", labelOpts={"position": 0.98, "color": t.foreground,
                                                                              "anchors": [(1, 1), (1, 1)]})
        self.halves.setZValue(16)
        self.halves.hide()
        self.map_plot.addItem(self.halves, ignoreBounds=True)
        self.add_cursor(self.map_plot)
        self.add_cursor(self.what_if_plot)
        self.add_cursor(self.trace_plot)
        self.empty = message(self.map_plot, t)
        self.map_plot.scene().sigMouseClicked.connect(self._clicked)
        self.what_if = WhatIfActions(self)
        self.what_if.watch(view)
        self.map_plot.scene().sigMouseMoved.connect(self._hovered)
        self._show_what_if(False)

    # -- data -----------------------------------------------------------------------------------
    def clear(self) -> None:
        self.probe = None
        self.counterfactual = None
        self.units = [0]
        self._legend_units = ()  # a new run may name its units differently (bidirectional)
        # A view option of the old run: a new one starts masked, as its experiment says.
        self.unmasked.blockSignals(True)
        self.unmasked.setChecked(False)
        self.unmasked.blockSignals(False)
        self.heatmap.clear()
        self.what_if_map.clear()
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

    def on_counterfactual(self, record: CounterfactualRecord | None) -> None:
        self.counterfactual = record
        self._dirty = True

    def show_unit(self, layer: int, unit: int) -> None:
        """Show ``layer`` and plot ``unit`` (the What if dock's ranking selects it everywhere)."""
        if 0 <= layer < self.layer.count():
            self.layer.setCurrentIndex(layer)
        self.select_unit(unit)

    def select_unit(self, unit: int, add: bool = False) -> None:
        """Plot unit ``unit``'s trace (``add`` keeps the others, up to four)."""
        units = [u for u in self.units if u != unit] if add else []
        self.units = (units + [unit])[-MAX_TRACES:]
        self.refresh(force=True)

    def _layer_index(self) -> int:
        return max(self.layer.currentIndex(), 0)

    @property
    def what_if_on(self) -> bool:
        return self.counterfactual is not None

    def _shown(self) -> ProbeRecord | None:
        """The factual run on show: the counterfactual's own (same loop) while one is on."""
        return self.counterfactual.factual if self.what_if_on else self.probe

    def _hidden(self) -> np.ndarray | None:
        """[T, H] of the chosen layer, masked or not ([T, 2H] when bidirectional: forward
        units, then backward)."""
        p = self._shown()
        if p is None:
            return None
        layer = min(self._layer_index(), len(p.hidden) - 1)
        if self.unmasked.isChecked() and p.unmasked_hidden is not None and not self.what_if_on:
            return both_halves(p.unmasked_hidden, p.backward and p.backward.unmasked_hidden, layer)
        return both_halves(p.hidden, p.backward and p.backward.hidden, layer)

    def _unit_name(self, u: int) -> str:
        p = self.probe
        if p is None or not p.bidirectional:
            return f"unit {u}"
        H = p.hidden[0].shape[1]
        return f"unit {u} (forward)" if u < H else f"unit {u - H} (backward)"

    def _what_if_hidden(self) -> np.ndarray | None:
        if not self.what_if_on:
            return None
        c = self.counterfactual.counterfactual
        return c.hidden[min(self._layer_index(), len(c.hidden) - 1)]

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
        if self.what_if_on:
            cf = self.counterfactual
            for i, (f, c) in enumerate(zip(cf.factual.hidden, cf.counterfactual.hidden, strict=True)):
                out[f"what_if_factual_hidden_l{i}"] = f.copy()
                out[f"what_if_hidden_l{i}"] = c.copy()
        return out

    # -- drawing --------------------------------------------------------------------------------
    def _show_what_if(self, on: bool) -> None:
        if self.what_if_plot.isVisible() != on:
            self.what_if_plot.setVisible(on)
        # Collapsed when hidden: a hidden plot kept its row, a blank band between the two plots.
        self.what_if_plot.setMaximumHeight(1e6 if on else 0)
        self.what_if_plot.setMinimumHeight(0)
        self.map_plot.parentItem().layout.setRowStretchFactor(1, 3 if on else 0)
        self.view_label.setVisible(on)
        self.what_if_view.setVisible(on)
        self.map_plot.setLabel("left", "factual" if on else "unit")

    def redraw(self) -> None:
        p, h, cf_h = self._shown(), self._hidden(), self._what_if_hidden()
        self.unmasked.setEnabled(p is not None and p.unmasked_hidden is not None and not self.what_if_on)
        self._show_what_if(cf_h is not None)
        if p is None or h is None:
            self.empty.setText("waiting for the probe sequence…")
            self.empty.show()
            return
        self.empty.hide()
        T, H = h.shape
        self.time_axis.set_labels(p.labels)
        self.heatmap.set(h.T)
        difference = self.what_if_view.currentText() == "difference"
        if cf_h is not None:
            self.what_if_axis.set_labels(p.labels)
            self.what_if_map.set((cf_h - h).T if difference else cf_h.T)
            self.what_if_plot.setLabel("left", "what if − factual" if difference else "what if")
            self.outlines.set_boxes(edited_boxes(self.counterfactual, self._layer_index(), "h", T, H))
        self.units = [u for u in self.units if u < H] or [0]
        cell = both_halves(p.cell, p.backward and p.backward.cell, self._layer_index()) if p.cell else None
        show_cell = cell is not None and not self.unmasked.isChecked() and cf_h is None
        if p.bidirectional:
            self.halves.setValue(p.hidden[0].shape[1] - 0.5)
        self.halves.setVisible(p.bidirectional)
        t = np.arange(T)
        for i, (trace, cell_trace, what_if, row) in enumerate(zip(
                self.traces, self.cell_traces, self.what_if_traces, self.rows, strict=True)):
            shown = i < len(self.units)
            u = self.units[i] if shown else 0
            if shown:
                trace.setData(t, h[:, u])
                row.setRegion((u - 0.5, u + 0.5))
                if show_cell:
                    cell_trace.setData(t, cell[:, u])
                if cf_h is not None:
                    what_if.setData(t, cf_h[:, u])
            trace.setVisible(shown)
            row.setVisible(shown)
            cell_trace.setVisible(shown and show_cell)
            what_if.setVisible(shown and cf_h is not None)
        # h (tanh) stays in [-1, 1]; an LSTM's cell state does not: the range grows to show it.
        drawn = [h[:, self.units]] + ([cell[:, self.units]] if show_cell else []) \
            + ([cf_h[:, self.units]] if cf_h is not None else [])
        reach = max(1.0, *(float(np.nanmax(np.abs(d), initial=0.0)) for d in drawn))
        if self.trace_plot.vb.viewRange()[1] != [-1.05 * reach, 1.05 * reach]:
            self.trace_plot.setYRange(-1.05 * reach, 1.05 * reach, padding=0)
        self._legend()
        padded = false_runs(p.valid)
        for shading in self.shading:
            shading.set_spans(padded)
        self.padding_axis.set_spans(padded)
        if self.padding_axis.isVisibleTo(self.map_plot) != bool(padded):  # each show re-lays out the plot
            self.map_plot.showAxis("top", bool(padded))
        mode = "masking off" if self.unmasked.isChecked() and p.unmasked_hidden is not None and cf_h is None else ""
        pad = f"{int((~p.valid).sum())} padded steps" if padded else ""
        extra = "dashed: cell state c_t" if show_cell and not mode else ""
        if cf_h is not None:
            extra = f"dashed: what if · {loss_text(self.counterfactual)}"
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

    def _unit_at(self, scene_pos) -> tuple[int, int] | None:
        """(t, unit) of the heatmap cell at ``scene_pos`` (either heatmap), or None."""
        p = self._shown()
        if p is None:
            return None
        for plot in (self.map_plot, self.what_if_plot):
            if plot.isVisible() and plot.vb.sceneBoundingRect().contains(scene_pos):
                point = plot.vb.mapSceneToView(scene_pos)
                t, unit = int(round(point.x())), int(round(point.y()))
                if 0 <= t < p.T and 0 <= unit < self._hidden().shape[1]:
                    return t, unit
        return None

    def _clicked(self, event) -> None:
        if self.probe is None or event.button() != Qt.LeftButton:
            return
        at = self._unit_at(event.scenePos())
        if at is not None:
            self.select_unit(at[1], add=bool(event.modifiers() & Qt.ShiftModifier))

    def _hovered(self, scene_pos) -> None:
        """Name the unit and step under the pointer for the right-click What if actions."""
        at, h = self._unit_at(scene_pos), self._hidden()
        if at is None or h is None:
            self.what_if.point_at(None)
            return
        t, unit = at
        if unit >= self._shown().hidden[0].shape[1]:  # a backward unit: interventions edit one direction
            self.what_if.point_at(None)
            return
        self.what_if.point_at(Target("hidden", self._layer_index(), unit, t, float(h[t, unit])))

    def on_theme(self, theme: Theme) -> None:
        for shading in self.shading:
            shading.set_color(theme.padding)
        self.heatmap.set_colormap(theme.diverging_map)
        self.what_if_map.set_colormap(theme.diverging_map)
        self.outlines.set_color(theme.foreground)
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
