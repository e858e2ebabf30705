"""Inside the cell: the diagram of the current cell kind with every gate's live value.

One unit at one time step of the probe: each gate box, state and equation chip is filled
with its value (sigmoid gates on a sequential map over [0, 1], tanh values and states on a
diverging map with white at 0). Stepping t (Left/Right when the panel has focus, or the
window's time scrubber) eases the colours from one step to the next. Hovering a gate or a
state shows its whole vector, all units at that t, in the bar chart at the side; clicking
a bar selects that unit.

What if: right-click a gate (or h, c) to zero, clamp or add to it for the shown unit from the
shown t on (app.panels.what_if). While interventions are on, "Run" picks which run the
diagram shows, and the side chart marks the other run's values beside each bar.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QBoxLayout, QComboBox, QLabel, QSpinBox, QWidget

from app.panels.analysis import most_active_unit
from app.panels.base import Panel
from app.panels.cell.equations import cell_values, is_signed, levels_of, op_notes
from app.panels.cell.view import CellView
from app.panels.plots import new_plot, pen
from app.panels.what_if import Target, WhatIfActions, loss_text
from app.theme import FONT_POINTS, Theme, colormap
from core.names import GATE_SYMBOLS, GATES
from core.records import CounterfactualRecord, ProbeRecord

NAMES = {"input": "input gate", "forget": "forget gate", "cell": "cell candidate", "output": "output gate",
         "reset": "reset gate", "update": "update gate", "new": "new gate", "h": "hidden state",
         "h_prev": "previous hidden state", "c": "cell state", "c_prev": "previous cell state"}
SYMBOLS = {**GATE_SYMBOLS, "h": "h<sub>t</sub>", "h_prev": "h<sub>t−1</sub>", "c": "c<sub>t</sub>",
           "c_prev": "c<sub>t−1</sub>"}
WIDE = 900  # pixels: from this width the bar chart goes beside the diagram, else below it
TIME_KEYS = {Qt.Key_Left: -1, Qt.Key_Right: 1, Qt.Key_Home: -10**9, Qt.Key_End: 10**9}


class CellPanel(Panel):
    name = "cell"
    title = "Inside the cell"
    draws = frozenset({ProbeRecord, CounterfactualRecord})
    instruments = frozenset({"probe", "counterfactual"})

    def build(self) -> None:
        self.setFocusPolicy(Qt.StrongFocus)
        self.make_layer_selector()
        self.unit = QSpinBox()
        self.unit.setPrefix("unit ")
        self.unit.setToolTip("The hidden unit whose gates the diagram shows (or click a bar)")
        self.unit.valueChanged.connect(lambda _: self.refresh(force=True))
        self.time_label = QLabel("")
        self.time_label.setToolTip("Left/Right (or the time scrubber) steps t")
        self.run_label = QLabel("Run")
        self.run_choice = QComboBox()
        self.run_choice.addItems(("what if", "factual"))
        self.run_choice.setToolTip("While interventions are on: which run the diagram shows")
        self.run_choice.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        for w in (self.layer_label, self.layer, self.unit, self.run_label, self.run_choice, self.time_label):
            self.options.addWidget(w)
        body = QWidget()
        row = self.body_layout = QBoxLayout(QBoxLayout.LeftToRight, body)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.diagram = CellView(self.theme)
        self.diagram.hovered.connect(self.show_vector)
        row.addWidget(self.diagram, 5)
        self.side = pg.GraphicsLayoutWidget()
        self.side.setBackground(self.theme.surface)
        self._views.append(self.side)
        row.addWidget(self.side, 2)
        self.layout().addWidget(body, 1)
        self.bars_plot = new_plot(self.side.ci, self.theme, row=0, col=0, x="unit")
        self.bars_plot.getAxis("left").setWidth(48)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.85, pen=None)
        self.bars_plot.addItem(self.bars)
        self.zero = pg.InfiniteLine(pos=0, angle=0, pen=pen(self.theme.muted, 1))
        self.bars_plot.addItem(self.zero)
        self.marker = pg.ScatterPlotItem(size=14, symbol="t", pen=pen(self.theme.foreground, 1.5),
                                         brush=pg.mkBrush(self.theme.accent))
        self.bars_plot.addItem(self.marker)
        self.other_run = pg.ScatterPlotItem(size=9, symbol="_", pen=pen(self.theme.foreground, 2.0))
        self.bars_plot.addItem(self.other_run)
        self.bars_plot.scene().sigMouseClicked.connect(self._bar_clicked)
        self.what_if = WhatIfActions(self)
        self.what_if.watch(self.diagram)
        self.diagram.viewport().installEventFilter(self)
        self.counterfactual: CounterfactualRecord | None = None
        self.probe: ProbeRecord | None = None
        self.kind = ""
        self.vector_key = ""  # what the side chart shows: the first gate until one is hovered
        self.values: dict[str, float] = {}
        self._animate = False
        self._unit_chosen = False
        self._draw_kind("lstm", None)

    # -- data ------------------------------------------------------------------------------
    def clear(self) -> None:
        self.probe = None
        self.counterfactual = None
        self._unit_chosen = False
        self.reset_layer_selector()
        self._draw_kind(self.run.kind if self.run else "lstm", None)

    def on_probe(self, record: ProbeRecord) -> None:
        self.probe = record
        self._animate = False

    def on_counterfactual(self, record: CounterfactualRecord | None) -> None:
        self.counterfactual = record
        self._animate = False
        self._dirty = True

    def show_unit(self, layer: int, unit: int) -> None:
        """Show ``unit`` of ``layer`` (the What if dock's ranking selects it everywhere)."""
        if 0 <= layer < self.layer.count():
            self.layer.setCurrentIndex(layer)
        self._unit_chosen = True
        if unit > self.unit.maximum():
            self.unit.setMaximum(int(unit))
        self.unit.setValue(int(unit))
        self.refresh(force=True)

    def _shown(self) -> ProbeRecord | None:
        """The run on show: the probe, or while interventions are on the chosen one of the two."""
        cf = self.counterfactual
        if cf is None:
            return self.probe
        return cf.counterfactual if self.run_choice.currentText() == "what if" else cf.factual

    def _other(self) -> ProbeRecord | None:
        cf = self.counterfactual
        if cf is None:
            return None
        return cf.factual if self.run_choice.currentText() == "what if" else cf.counterfactual

    def on_time_cursor(self, t: int) -> None:
        self._animate = True
        self._dirty = True

    @property
    def current_layer(self) -> int:
        p = self._shown()
        layers = len(p.hidden) if p is not None else 1
        return min(max(self.layer.currentIndex(), 0), layers - 1)

    @property
    def t(self) -> int:
        """The time step shown: the cursor, kept inside the probe."""
        p = self._shown()
        T = p.T if p is not None else 1
        return min(max(self.time_cursor, 0), T - 1)

    def _sizes(self, probe: ProbeRecord) -> tuple[int, int]:
        s = probe.hidden[0].shape[1]
        if self.current_layer > 0:
            return s, s
        exp = self.run.experiment if self.run else None
        r = exp.embed_size if exp is not None and exp.is_seq2seq else probe.inputs.shape[1]
        return int(r), int(s)

    def _draw_kind(self, kind: str, sizes: tuple[int, int] | None) -> None:
        nonlinearity = self.run.experiment.nonlinearity if self.run and kind == "rnn" else "tanh"
        self.kind = kind
        self._shape = (kind, sizes, self.theme.name)
        self.diagram.set_kind(kind, nonlinearity, sizes)
        if self.vector_key not in self._vector_keys():
            self.vector_key = GATES[kind][0] if GATES[kind] else "h"

    def _vector_keys(self) -> set[str]:
        return {*GATES[self.kind], "h", "h_prev"} | ({"c", "c_prev"} if self.kind == "lstm" else set())

    # -- drawing ---------------------------------------------------------------------------
    def redraw(self) -> None:
        p = self._shown()
        self.run_label.setVisible(self.counterfactual is not None)
        self.run_choice.setVisible(self.counterfactual is not None)
        if p is None:
            self.time_label.setText("")
            self.note.setText("waiting for the probe…")
            return
        sizes = self._sizes(p)
        if (p.kind, sizes, self.theme.name) != self._shape:
            self._draw_kind(p.kind, sizes)
        H = p.hidden[0].shape[1]
        if self.unit.maximum() != H - 1:
            self.unit.blockSignals(True)
            self.unit.setRange(0, H - 1)
            self.unit.blockSignals(False)
        if not self._unit_chosen:
            self._unit_chosen = True
            self.unit.blockSignals(True)
            self.unit.setValue(most_active_unit(p.hidden[self.current_layer], p.valid))
            self.unit.blockSignals(False)
        layer, unit, t = self.current_layer, self.unit.value(), self.t
        self.values = cell_values(p, layer, unit, t)
        self.diagram.set_values(self.values, op_notes(p.kind, self.values), animate=self._animate)
        self._animate = False
        label = p.labels[t] if t < len(p.labels) else ""
        self.diagram.set_input(label)
        self.time_label.setText(f"t = {t} of {p.T - 1}" + (f"   input {label!r}" if label else ""))
        padded = "  ·  padded step: the state is held" if not bool(p.valid[t]) else ""
        what_if = ""
        if self.counterfactual is not None:
            what_if = f"  ·  showing {self.run_choice.currentText()}  ·  {loss_text(self.counterfactual)}"
        direction = "  ·  forward direction (Hidden state shows both)" if p.bidirectional else ""
        self.note.setText(f"step {p.step}  ·  {p.kind}{direction}  ·  ←/→ step t{padded}{what_if}")
        self._draw_bars()

    def vector(self, key: str, p: ProbeRecord | None = None) -> np.ndarray:
        """All units of ``key`` (a gate, 'h', 'h_prev', 'c', 'c_prev') at the shown t: [H]
        (of the run on show, or of ``p``)."""
        p, layer, t = p or self._shown(), self.current_layer, self.t
        if key in p.gates[layer]:
            return p.gates[layer][key][t]
        source = p.cell[layer] if key.startswith("c") else p.hidden[layer]
        if key.endswith("_prev"):
            return source[t - 1] if t > 0 else np.zeros_like(source[0])
        return source[t]

    def show_vector(self, key: str) -> None:
        """Show ``key``'s vector in the side chart (the diagram calls this on hover)."""
        key = "h" if key == "layer" else key
        if key in self._vector_keys():
            self.vector_key = key
            if self._shown() is not None:
                self._draw_bars()

    def _draw_bars(self) -> None:
        key, values = self.vector_key, self.vector(self.vector_key)
        lo, hi = levels_of(key)
        cmap = colormap(self.theme.diverging_map if is_signed(key) else self.theme.sequential_map)
        brushes = [pg.mkBrush(c) for c in cmap.map(np.clip((values - lo) / (hi - lo), 0, 1), mode="qcolor")]
        units = np.arange(len(values))
        unit = self.unit.value()
        pens = [pg.mkPen(self.theme.muted, width=0.6)] * len(values)
        pens[unit] = pg.mkPen(self.theme.accent, width=2.5)
        self.bars.setOpts(x=units, height=values, width=0.85, brushes=brushes, pens=pens)
        top = max(hi, float(values.max()) if values.size else hi)
        bottom = min(lo, float(values.min()) if values.size else lo)
        self.marker.setData([unit], [max(float(values[unit]), 0.0) + 0.06 * (top - bottom)])
        other = self._other()
        if other is not None:
            self.other_run.setData(units, self.vector(key, other))
        self.other_run.setVisible(other is not None)
        self.bars_plot.setYRange(bottom, top + 0.1 * (top - bottom), padding=0.02)
        self.bars_plot.setXRange(-0.7, len(values) - 0.3, padding=0)
        self.bars_plot.setLabel("left", f"{NAMES.get(key, key)}")
        symbol = SYMBOLS.get(key, key)
        marks = "" if other is None else f"; ▬ {'factual' if self.run_choice.currentText() == 'what if' else 'what if'}"
        self.bars_plot.setTitle(f"<i>{symbol}</i> at t = {self.t}: all {len(values)} units "
                                f"(unit {unit} = {values[unit]:+.3f}{marks})",
                                color=self.theme.foreground, size=f"{FONT_POINTS + 1}pt")

    def _bar_clicked(self, event) -> None:
        if self._shown() is None or event.button() != Qt.LeftButton:
            return
        vb = self.bars_plot.vb
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        x = vb.mapSceneToView(event.scenePos()).x()
        self.unit.setValue(min(max(int(round(x)), 0), self.unit.maximum()))

    def prepare_shot(self, trainer=None) -> None:
        """Before a screenshot: show a telling time step, not t = 0 (h_0 = 0 says little):
        the last marked input when the task marks some (the adding problem's operands),
        else where the chosen unit's state changes most."""
        self.refresh(force=True)
        p = self._shown()
        if p is None:
            return
        marked = [t for t, label in enumerate(p.labels) if label.startswith("*")]
        if marked:
            t = marked[-1]
        else:
            h = p.hidden[self.current_layer][:, self.unit.value()]
            t = int(np.argmax(np.abs(np.diff(h)))) + 1 if p.T > 1 else 0
        self.set_time_cursor(t)
        self.refresh(force=True)

    # -- layout -------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        # The chart beside the diagram when there is room; below it on a narrow panel (beside
        # it at 1280x720 the diagram's text was tiny and the chart cut off at the right).
        direction = QBoxLayout.LeftToRight if self.width() >= WIDE else QBoxLayout.TopToBottom
        if self.body_layout.direction() != direction:
            self.body_layout.setDirection(direction)
            self.body_layout.setStretch(0, 5 if direction == QBoxLayout.LeftToRight else 3)
            self.body_layout.setStretch(1, 2)

    # -- keyboard ----------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        delta = TIME_KEYS.get(event.key())
        p = self._shown()
        if delta is None or p is None:
            super().keyPressEvent(event)
            return
        self.set_time_cursor(min(max(self.t + delta, 0), p.T - 1))
        self.refresh()
        event.accept()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt naming)
        """A right-click on the diagram: aim the What if actions at the gate or state under it."""
        if event.type() == QEvent.ContextMenu:
            self.aim(self.diagram.key_at(event.pos()))
        return False

    def aim(self, key: str | None) -> None:
        """Point the What if actions at ``key`` (a gate, 'h' or 'c') of the shown unit and t."""
        p = self._shown()
        key = key.removeprefix("eq:") if key else None  # an equation's chip names its value too
        key = "h" if key == "layer" else key
        if p is None or key not in {*GATES[self.kind], "h", "c"} or key not in self.values:
            self.what_if.point_at(None)
            return
        target, gate = ("gate", key) if key in GATES[self.kind] else ("hidden" if key == "h" else "cell", None)
        self.what_if.point_at(Target(target, self.current_layer, self.unit.value(), self.t,
                                     self.values[key], gate))

    def export_data(self) -> dict[str, np.ndarray]:
        if self._shown() is None:
            return {}
        out = {key: np.array([value]) for key, value in self.values.items()}
        out[f"{self.vector_key}_all_units"] = self.vector(self.vector_key).copy()
        out["unit"], out["t"] = np.array([self.unit.value()]), np.array([self.t])
        return out

    def on_theme(self, theme: Theme) -> None:
        self.diagram.theme = theme
        self.marker.setBrush(pg.mkBrush(theme.accent))
        self.zero.setPen(pen(theme.muted, 1))
        self._draw_kind(self.kind, self._shape[1])
