"""What if, in the panels: the right-click actions that start an intervention, and what the
hidden, gates and cell panels share to show the counterfactual beside the factual run.

``WhatIfActions`` adds three actions to a panel's right-click menu: Zero, Clamp to… and
Add… on the value under the pointer (a unit's h, c or gate) from its time step on. The panel
says what is under the pointer as it moves (``point_at``); outside anything editable the
actions are hidden. ``requested`` carries the core.interventions.Intervention; the window's
What if dock (app.window.interventions) applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QWidget

from app.panels.analysis import positive_for_log
from app.panels.plots import pen
from app.theme import OKABE_ITO
from core.interventions import Intervention, parse_intervention
from core.names import GATE_SYMBOLS
from core.records import CounterfactualRecord

VIEWS = ("beside", "difference")  # how a panel shows the counterfactual
WHAT_IF_COLOR = OKABE_ITO["vermillion"]  # the counterfactual's curves, in both themes


@dataclass(frozen=True)
class Target:
    """One value of one unit at one time step: what a right-click would edit."""

    target: str  # hidden, cell or gate
    layer: int
    unit: int
    t: int
    value: float
    gate: str | None = None

    @property
    def label(self) -> str:
        if self.target == "gate":
            name = "cell candidate g" if self.gate == "cell" else f"{self.gate} gate {GATE_SYMBOLS[self.gate]}"
        else:
            name = "h" if self.target == "hidden" else "cell state c"
        return f"{name} of unit {self.unit}"

    def intervention(self, op: str, value: float = 0.0) -> Intervention:
        return Intervention(self.target, self.layer, (self.unit,), self.gate, self.t, None, op, float(value))


def ask_value(parent: QWidget, title: str, label: str, value: float) -> float | None:
    """A number from the user (None when cancelled); tests replace this function."""
    number, ok = QInputDialog.getDouble(parent, title, label, float(value), -1e6, 1e6, 4)
    return number if ok else None


class WhatIfActions(QObject):
    """Zero / Clamp to… / Add… from here on, for what ``point_at`` last named."""

    requested = Signal(object)  # Intervention

    def __init__(self, panel: QWidget):
        super().__init__(panel)
        self.panel = panel
        self.target: Target | None = None
        self.zero = QAction("Zero", panel)
        self.clamp = QAction("Clamp to…", panel)
        self.add = QAction("Add…", panel)
        self.separator = QAction(panel)
        self.separator.setSeparator(True)
        self.zero.triggered.connect(lambda _=False: self._emit("zero"))
        self.clamp.triggered.connect(lambda _=False: self._emit("set"))
        self.add.triggered.connect(lambda _=False: self._emit("add"))
        self.actions = (self.zero, self.clamp, self.add, self.separator)
        panel.addActions(list(self.actions))
        self.point_at(None)

    def watch(self, view: QWidget) -> None:
        """Forget the target when the pointer leaves ``view`` (a right-click elsewhere then
        shows no intervention)."""
        view.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Leave:
            self.point_at(None)
        return False

    def point_at(self, target: Target | None) -> None:
        if target == self.target and target is not None:
            return
        self.target = target
        for action in self.actions:
            action.setVisible(target is not None)
        if target is not None:
            where = f"{target.label} from t = {target.t}"
            self.zero.setText(f"What if: zero {where}")
            self.clamp.setText(f"What if: clamp {where} to…")
            self.add.setText(f"What if: add to {where}…")

    def _emit(self, op: str) -> None:
        target = self.target
        if target is None:
            return
        value = 0.0
        if op != "zero":
            verb = "Clamp" if op == "set" else "Add to"
            value = ask_value(self.panel, f"What if: {verb.lower()}",
                              f"{verb} {target.label} from t = {target.t} on:" + (" (value)" if op == "set" else ""),
                              target.value if op == "set" else 0.1)
            if value is None:
                return
        self.requested.emit(target.intervention(op, value))


# ------------------------------------------------------------------------ showing a counterfactual
def loss_text(record: CounterfactualRecord) -> str:
    """'probe loss: factual 0.0019, what if 0.545'."""
    f, c = record.loss
    return f"probe loss: factual {f:.3g}, what if {c:.3g}"


def edited_boxes(record: CounterfactualRecord, layer: int, key: str, T: int, H: int) -> list[tuple[float, ...]]:
    """(t0, t1, u0, u1) pixel-edge boxes of the edits of ``key`` ("h", "c" or a gate) in
    ``layer``, one per run of consecutive units."""
    boxes = []
    for text in record.interventions:
        edit = parse_intervention(text)
        if edit.layer != layer or edit.key != key:
            continue
        t0, t1 = edit.start - 0.5, (T if edit.stop is None else edit.stop) - 0.5
        units = list(range(H)) if edit.units is None else [u for u in edit.units if u < H]
        runs: list[list[int]] = []
        for u in units:
            if runs and u == runs[-1][1] + 1:
                runs[-1][1] = u
            else:
                runs.append([u, u])
        boxes += [(t0, t1, a - 0.5, b + 0.5) for a, b in runs]
    return boxes


class Outlines:
    """Rectangles drawn over a heatmap (the edited units and steps), one curve for all."""

    def __init__(self, plot: pg.PlotItem, color: str):
        self.curve = pg.PlotCurveItem(pen=pen(color, 2.0, Qt.DashLine), connect="finite")
        self.curve.setZValue(18)
        plot.addItem(self.curve, ignoreBounds=True)

    def set_boxes(self, boxes: list[tuple[float, ...]]) -> None:
        xs, ys = [], []
        for t0, t1, u0, u1 in boxes:
            xs += [t0, t1, t1, t0, t0, np.nan]
            ys += [u0, u0, u1, u1, u0, np.nan]
        self.curve.setData(np.array(xs, dtype=float), np.array(ys, dtype=float))

    def set_color(self, color: str) -> None:
        self.curve.setPen(pen(color, 2.0, Qt.DashLine))


class GradientOverlay:
    """||dL/dh_t|| of the counterfactual (top layer), dashed over a gradients plot.

    Kept apart from the gradients panel: the window gives it the panel's top plot (a log
    axis of ||dL/dh_t|| over t) and the counterfactual records; the panel itself is untouched.
    """

    def __init__(self, plot: pg.PlotItem):
        self.plot = plot
        self.curve = pg.PlotDataItem(pen=pen(WHAT_IF_COLOR, 2.5, Qt.DashLine))
        self.curve.setZValue(12)
        plot.addItem(self.curve)  # in the autorange: the two runs' gradients are compared
        self.curve.hide()
        self.in_legend = False

    def show(self, record: CounterfactualRecord | None) -> None:
        norms = None if record is None or record.gradient_norms is None else record.gradient_norms[-1]
        legend = self.plot.legend
        if norms is None:
            self.curve.hide()
            if self.in_legend and legend is not None:
                legend.removeItem(self.curve)
            self.in_legend = False
            return
        self.curve.setData(np.arange(len(norms)), positive_for_log(norms), connect="finite")
        self.curve.show()
        if not self.in_legend and legend is not None:
            legend.addItem(self.curve, "what if")
            self.in_legend = True
