"""Gates panel: every gate of the cell as a units x time heatmap, with saturation per unit.

LSTM shows input i, forget f, cell candidate g, output o and the cell state c; GRU shows
reset r, update z and new n (torch.nn's order). Next to each gate, a bar per unit gives the
fraction of (unpadded) time steps the gate is nearly shut (< 0.1, to the left) or nearly
open (> 0.9, to the right); tanh gates are read on (x + 1) / 2, i.e. near -1 or near +1.
Why they matter (``SATURATION_NOTE``, the bars' tooltip): a saturated gate's own derivative
sigma' is near 0, so the weights feeding it stop learning; but a forget gate saturated open
(f near 1) passes the cell state's gradient back unchanged, which is how the LSTM carries it.

What if: right-click a unit's row of a gate (or of c) to zero, clamp or add to it from that
time step on (app.panels.what_if). While interventions are on, "Show" picks the factual run,
the counterfactual ("what if") or their difference; the edited units and steps are outlined.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel

from app.panels.analysis import false_runs, saturation
from app.panels.axes import LabelAxis
from app.panels.base import Panel
from app.panels.plots import Heatmap, Shading, fit_label, new_plot
from app.panels.what_if import Outlines, Target, WhatIfActions, edited_boxes, loss_text
from app.theme import FONT_POINTS, LEVELS, OKABE_ITO, Theme, ui_font
from core.names import GATE_SYMBOLS, GATES, TANH_GATES
from core.records import CounterfactualRecord, ProbeRecord

SHOWS = ("difference", "what if", "factual")  # what the heatmaps show while interventions are on

SHUT_COLOR, OPEN_COLOR = OKABE_ITO["blue"], OKABE_ITO["orange"]
SATURATION_NOTE = ("A saturated gate's own derivative σ' is near 0, so the weights feeding it stop "
                   "learning. A forget gate saturated open (f near 1) passes the cell state's "
                   "gradient back unchanged: that is how the LSTM carries it (see ‖∂L/∂c_t‖ in "
                   "Gradients through time).")


class _Row:
    """One gate: its name, heatmap (with colour bar) and saturation bars."""

    def __init__(self, panel: GatesPanel, gate: str, row: int, last: bool, bars_axis: bool):
        t = panel.theme
        layout = panel.view.ci
        self.gate = gate
        self.panel_theme = t
        symbol = GATE_SYMBOLS.get(gate, gate)
        name = "cell state" if gate == "c" else gate
        self.label = layout.addLabel(f"<b>{symbol}</b><br>{name}", row=row, col=0, color=t.foreground,
                                     size=f"{FONT_POINTS}pt", justify="right")
        self.axis = LabelAxis("bottom")
        self.plot = new_plot(layout, t, row=row, col=1, bottom_axis=self.axis)
        self.plot.getAxis("left").setStyle(showValues=False)
        self.plot.getAxis("left").setWidth(2)
        if not last:
            self.axis.setStyle(showValues=False)
            self.axis.setHeight(4)
        else:
            self.plot.setLabel("bottom", "time step t (probe inputs)")
        signed = gate in TANH_GATES or gate == "c"
        levels = LEVELS["cell_state"] if gate == "c" else LEVELS["signed"] if signed else LEVELS["unit"]
        cmap = t.diverging_map if signed else t.sequential_map
        self.signed = signed
        self.levels, self.difference = levels, False
        self.heatmap = panel.add_heatmap(Heatmap(self.plot, levels, cmap, ticks=3))
        self.shading = Shading(self.plot, t.padding)
        self.outlines = Outlines(self.plot, t.foreground)
        self.unit_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(t.accent, width=1.5))
        self.unit_line.setZValue(16)
        self.unit_line.hide()
        self.plot.addItem(self.unit_line, ignoreBounds=True)
        panel.add_cursor(self.plot)
        self.bars = new_plot(layout, t, row=row, col=2)
        self.bars.setXRange(-1.15, 1.15, padding=0)
        self.bars.setYLink(self.plot)
        self.bars.getAxis("left").setStyle(showValues=False)
        self.bars.getAxis("left").setWidth(2)
        self.bars.getAxis("bottom").setTicks([[(-0.5, "50%"), (0, "0"), (0.5, "50%")]])
        self.bars.setToolTip(SATURATION_NOTE)
        if bars_axis:
            self.bars.setLabel("bottom", "shut ◀ saturated ▶ open")
            fit_label(self.bars.getAxis("bottom"), ["shut ◀ saturated ▶ open", "shut ◀ ▶ open"])
        else:
            self.bars.getAxis("bottom").setStyle(showValues=False)
            self.bars.getAxis("bottom").setHeight(4)
        self.shut = pg.BarGraphItem(x0=[], y=[], width=[], height=0.8, brush=SHUT_COLOR, pen=None)
        self.open = pg.BarGraphItem(x0=[], y=[], width=[], height=0.8, brush=OPEN_COLOR, pen=None)
        self.bars.addItem(self.shut)
        self.bars.addItem(self.open)
        self.bars.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(t.muted, width=1)))
        if gate == "c":
            self.bars.hide()

    def draw(self, values: np.ndarray, probe: ProbeRecord, padded: list[tuple[int, int]],
             shown: np.ndarray | None = None, difference: bool = False) -> str:
        """Draw [T, H] values (``shown`` instead in the heatmap when given, e.g. a difference);
        returns the one-line saturation summary of ``values``."""
        self.axis.set_labels(probe.labels)
        if difference != self.difference:  # a difference is signed whatever the gate
            self.difference = difference
            self.heatmap.set_colormap(self.colormap_name())
        self.heatmap.set((values if shown is None else shown).T,
                         levels=LEVELS["signed"] if difference else self.levels)
        self.shading.set_spans(padded)
        if self.gate == "c":
            return ""
        unit_values = (values + 1.0) / 2.0 if self.signed else values
        shut, open_ = saturation(unit_values, probe.valid)
        units = np.arange(values.shape[1])
        self.shut.setOpts(x0=-shut, y=units, width=shut, height=0.8)
        self.open.setOpts(x0=np.zeros_like(open_), y=units, width=open_, height=0.8)
        self.fractions = (shut, open_)
        return f"{GATE_SYMBOLS[self.gate]}: {shut.mean():.0%} shut, {open_.mean():.0%} open"

    def colormap_name(self) -> str:
        t = self.panel_theme
        return t.diverging_map if self.difference or self.signed else t.sequential_map


class GatesPanel(Panel):
    name = "gates"
    title = "Gates"
    draws = frozenset({ProbeRecord, CounterfactualRecord})
    instruments = frozenset({"probe", "counterfactual"})
    min_height = 440  # five rows of gates, each tall enough for its colour bar's labels

    def build(self) -> None:
        self.make_layer_selector()
        self.options.addWidget(self.layer_label)
        self.options.addWidget(self.layer)
        self.show_label = QLabel("Show")
        self.what_if_show = QComboBox()
        self.what_if_show.addItems(SHOWS)
        self.what_if_show.setToolTip("While interventions are on: the counterfactual minus the factual run, "
                             "the counterfactual (what if), or the factual run")
        self.what_if_show.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        self.options.addWidget(self.show_label)
        self.options.addWidget(self.what_if_show)
        self.counterfactual: CounterfactualRecord | None = None
        self.shown_unit: int | None = None
        self.legend = QLabel(f"<span style='color:{SHUT_COLOR}'>■</span> shut (&lt; 0.1)  "
                             f"<span style='color:{OPEN_COLOR}'>■</span> open (&gt; 0.9)")
        self.options.addWidget(self.legend)
        self.view = self.add_view(pg.GraphicsLayoutWidget())
        self.probe: ProbeRecord | None = None
        self.rows: list[_Row] = []
        self.kind: str | None = None
        self.placeholder = QLabel("")  # shown instead of the plots when there are no gates
        self.placeholder.setObjectName("gates-placeholder")
        self.placeholder.setAlignment(Qt.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setFont(ui_font(FONT_POINTS + 1))
        self.layout().addWidget(self.placeholder, 1)
        self._build_rows("")  # rows come with the first run: its cell kind decides them
        self.what_if = WhatIfActions(self)
        self.what_if.watch(self.view)
        self.view.scene().sigMouseMoved.connect(self._hovered)

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The rows on show, e.g. ('input', 'forget', 'cell', 'output', 'c') for LSTM."""
        return tuple(r.gate for r in self.rows)

    def _build_rows(self, kind: str) -> None:
        if kind == self.kind:
            return
        self.kind = kind
        self.view.ci.clear()
        self.remove_heatmaps()
        self.remove_cursors()
        self.rows = []
        gates = list(GATES.get(kind, ())) + (["c"] if kind == "lstm" else [])
        for i, gate in enumerate(gates):
            self.rows.append(_Row(self, gate, i, last=i == len(gates) - 1,
                                  bars_axis=i == len(GATES[kind]) - 1))
        if self.rows:
            layout = self.view.ci.layout
            layout.setColumnFixedWidth(0, 72)
            layout.setColumnStretchFactor(1, 5)
            layout.setColumnStretchFactor(2, 1)
            layout.setColumnMinimumWidth(2, 140)
            for row in self.rows[1:]:
                row.plot.setXLink(self.rows[0].plot)
        self.placeholder.setText(
            "A plain RNN has no gates: h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh).\n"
            "Its hidden state is in the Hidden state panel." if kind == "rnn"
            else "The gates appear when the model is built.")
        self.placeholder.setVisible(not self.rows)
        self.view.setVisible(bool(self.rows))
        self.legend.setVisible(bool(self.rows))

    def clear(self) -> None:
        self.probe = None
        self.counterfactual = None
        self.shown_unit = None
        kind = self.run.kind if self.run else ""
        self._build_rows(kind)
        self.reset_layer_selector()

    def on_probe(self, record: ProbeRecord) -> None:
        self.probe = record
        self._build_rows(record.kind)

    def on_counterfactual(self, record: CounterfactualRecord | None) -> None:
        self.counterfactual = record
        self._dirty = True

    def show_unit(self, layer: int, unit: int) -> None:
        """Mark ``unit`` of ``layer`` on every gate (the What if dock's ranking selects it)."""
        if 0 <= layer < self.layer.count():
            self.layer.setCurrentIndex(layer)
        self.shown_unit = int(unit)
        self.refresh(force=True)

    def _layer_of(self, p: ProbeRecord) -> int:
        return min(max(self.layer.currentIndex(), 0), len(p.gates) - 1)

    @staticmethod
    def _values(p: ProbeRecord, layer: int, gate: str) -> np.ndarray | None:
        return p.cell[layer] if gate == "c" else p.gates[layer].get(gate)

    def redraw(self) -> None:
        cf = self.counterfactual
        self.show_label.setVisible(cf is not None)
        self.what_if_show.setVisible(cf is not None)
        p = cf.factual if cf is not None else self.probe
        if p is None or not self.rows:
            self.note.setText("")
            return
        layer = self._layer_of(p)
        padded = false_runs(p.valid)
        show = self.what_if_show.currentText() if cf is not None else "factual"
        summaries = []
        for row in self.rows:
            values = self._values(p, layer, row.gate)
            if values is None:
                continue
            shown, difference = None, False
            if show != "factual":
                what_if = self._values(cf.counterfactual, layer, row.gate)
                difference = show == "difference"
                shown = what_if - values if difference else what_if
                values = what_if
            summaries.append(row.draw(values, p, padded, shown, difference))
            key = "c" if row.gate == "c" else row.gate
            row.outlines.set_boxes(edited_boxes(cf, layer, key, p.T, values.shape[1]) if cf is not None else [])
            row.unit_line.setVisible(self.shown_unit is not None and self.shown_unit < values.shape[1])
            if self.shown_unit is not None:
                row.unit_line.setValue(self.shown_unit)
        if p.bidirectional:  # a bidirectional encoder: these are its forward direction's gates
            summaries.insert(0, "forward direction (Hidden state shows both)")
        if cf is not None:
            summaries.insert(0, f"showing {show}" + (" (what if − factual)" if show == "difference" else ""))
            summaries.append(loss_text(cf))
        self.note.setText("  ·  ".join([f"step {p.step}", *(s for s in summaries if s)]))

    def _hovered(self, scene_pos) -> None:
        """Name the gate, unit and step under the pointer for the right-click What if actions."""
        cf = self.counterfactual
        p = cf.factual if cf is not None else self.probe
        target = None
        if p is not None:
            layer = self._layer_of(p)
            for row in self.rows:
                if not row.plot.vb.sceneBoundingRect().contains(scene_pos):
                    continue
                point = row.plot.vb.mapSceneToView(scene_pos)
                t, unit = int(round(point.x())), int(round(point.y()))
                values = self._values(p, layer, row.gate)
                if values is not None and 0 <= t < p.T and 0 <= unit < values.shape[1]:
                    kind = ("cell", None) if row.gate == "c" else ("gate", row.gate)
                    target = Target(kind[0], layer, unit, t, float(values[t, unit]), kind[1])
                break
        self.what_if.point_at(target)

    def export_data(self) -> dict[str, np.ndarray]:
        p = self.probe
        if p is None:
            return {}
        out: dict[str, np.ndarray] = {"t": np.arange(p.T), "valid": p.valid.copy()}
        for i, gates in enumerate(p.gates):
            for gate, values in gates.items():
                out[f"{gate}_l{i}"] = values.copy()
        for i, c in enumerate(p.cell or ()):
            out[f"c_l{i}"] = c.copy()
        for row in self.rows:
            if hasattr(row, "fractions"):
                out[f"{row.gate}_shut_fraction"] = row.fractions[0].copy()
                out[f"{row.gate}_open_fraction"] = row.fractions[1].copy()
        return out

    def on_theme(self, theme: Theme) -> None:
        for row in self.rows:
            row.panel_theme = theme
            row.label.setText(row.label.text, color=theme.foreground)  # (drawn dark on dark before)
            row.heatmap.set_colormap(row.colormap_name())
            row.shading.set_color(theme.padding)
            row.outlines.set_color(theme.foreground)
