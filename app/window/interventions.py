"""The What if dock: interventions on the model, each on or off, and units ranked by effect.

Interventions come from the panels' right-click actions (app.panels.what_if). The dock lists
them, each with an on/off switch, with Remove, Clear and "Keep while training (lesion)".
Every change goes to the training process as one job (app.training.jobs.set_interventions),
which checks the whole list against the model and answers with the counterfactual probe; it
reaches the panels like any record, and while interventions are on the counterfactual
instrument keeps it fresh. Nothing is applied here: when the training process refuses a list,
the dock keeps the last one it accepted and the status bar says why.

"Rank units" runs the ablation sweep (app.training.jobs.rank_units) and draws the change in
probe loss when each unit is zeroed, exactly (H + 1 runs in one batched forward) or, with
"first-order" ticked, its linear estimate from one forward and backward (for big models; the
chart's title says which); clicking a bar selects that unit in every panel.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.panels.plots import new_plot, pen
from app.panels.what_if import GradientOverlay, loss_text
from app.theme import Theme
from app.training import jobs
from app.training.messages import JobResult, RunInfo
from core.interventions import Intervention, enabled, toggled
from core.records import AblationRecord, CounterfactualRecord, StepRecord

HELP = ("Right-click a unit in Hidden state or Gates, or a gate in Inside the cell, to zero, clamp or "
        "add to it from that time step on. The panels then show the run with the intervention (what if) "
        "beside the run as it is.")
LABELLED = 3  # the top units named above their bars


class WhatIfDock(QWidget):
    """The dock's widgets, no engine: the list, its switches, the lesion box, the ranking chart."""

    toggled = Signal(int, bool)
    removed = Signal(int)
    cleared = Signal()
    lesion_changed = Signal(bool)
    rank_requested = Signal(int, str)  # layer, method (core.training.counterfactual.ABLATION_METHODS)
    unit_chosen = Signal(int, int)  # layer, unit

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("what-if")
        self.theme = theme
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        self.help = QLabel(HELP)
        self.help.setWordWrap(True)
        layout.addWidget(self.help)
        self.list = QListWidget()
        self.list.setObjectName("what-if-list")
        self.list.setWordWrap(True)
        self.list.itemChanged.connect(self._item_changed)
        layout.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        self.remove = QPushButton("Remove")
        self.remove.clicked.connect(self._remove)
        self.clear_all = QPushButton("Clear")
        self.clear_all.clicked.connect(self.cleared.emit)
        buttons.addWidget(self.remove)
        buttons.addWidget(self.clear_all)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.lesion = QCheckBox("Keep while training (lesion)")
        self.lesion.setToolTip("Apply the interventions that are on to every training step too")
        self.lesion.toggled.connect(self.lesion_changed.emit)
        layout.addWidget(self.lesion)
        self.loss = QLabel("")
        self.loss.setObjectName("what-if-loss")
        self.loss.setWordWrap(True)
        layout.addWidget(self.loss)
        rank = QHBoxLayout()
        self.rank = QPushButton("Rank units by effect")
        self.rank.setToolTip("Zero each hidden unit in turn over the whole probe: how much the probe loss rises")
        self.layer = QSpinBox()
        self.layer.setPrefix("layer ")
        self.first_order = QCheckBox("first-order")
        self.first_order.setToolTip("Estimate every unit's effect from one forward and one backward pass "
                                    "(-sum over t of dL/dh_t x h_t) instead of running the model once per "
                                    "unit: ranks units fast on big models, but is only the linear part")
        self.rank.clicked.connect(lambda: self.rank_requested.emit(
            self.layer.value(), "first-order" if self.first_order.isChecked() else "exact"))
        rank.addWidget(self.rank)
        rank.addWidget(self.layer)
        rank.addWidget(self.first_order)
        rank.addStretch(1)
        layout.addLayout(rank)
        self.chart = pg.GraphicsLayoutWidget()
        self.chart.setMinimumHeight(150)
        self.chart.setBackground(theme.surface)
        self.plot = new_plot(self.chart.ci, theme, row=0, col=0, x="unit", y="Δ probe loss")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, pen=None)
        self.plot.addItem(self.bars)
        self.names: list[pg.TextItem] = []
        self.chart.scene().sigMouseClicked.connect(self._bar_clicked)
        layout.addWidget(self.chart, 2)
        self.edits: tuple[Intervention, ...] = ()
        self.ablation: AblationRecord | None = None
        self.chosen: int | None = None
        self._filling = False
        self.set_interventions((), False)
        self.set_ablation(None)

    # -- showing ---------------------------------------------------------------------------
    def set_interventions(self, edits: tuple[Intervention, ...], lesion: bool) -> None:
        self.edits = tuple(edits)
        self._filling = True
        self.list.clear()
        for edit in self.edits:
            item = QListWidgetItem(edit.describe())
            item.setToolTip(edit.text())
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if edit.enabled else Qt.Unchecked)
            self.list.addItem(item)
        self.lesion.blockSignals(True)
        self.lesion.setChecked(lesion)
        self.lesion.blockSignals(False)
        self._filling = False
        for widget in (self.remove, self.clear_all, self.lesion):
            widget.setEnabled(bool(self.edits))
        if not enabled(self.edits):
            self.loss.setText("")

    def set_loss(self, record: CounterfactualRecord | None) -> None:
        self.loss.setText("" if record is None else f"step {record.step}: {loss_text(record)}")

    def set_layers(self, layers: int) -> None:
        self.layer.setRange(0, max(layers - 1, 0))
        self.layer.setVisible(layers > 1)

    def set_ablation(self, record: AblationRecord | None) -> None:
        self.ablation, self.chosen = record, None
        for name in self.names:
            self.plot.removeItem(name)
        self.names = []
        if record is None:
            self.bars.setOpts(x=[], height=[])
            self.plot.setTitle("")
            return
        effects = record.effects
        units = np.arange(len(effects))
        self.bars.setOpts(x=units, height=effects, width=0.8, brushes=self._brushes(effects))
        for unit in record.order[:LABELLED]:
            name = pg.TextItem(f"{int(unit)}", color=self.theme.foreground, anchor=(0.5, 1))
            name.setPos(float(unit), max(float(effects[unit]), 0.0))
            self.plot.addItem(name)
            self.names.append(name)
        how = "first-order estimate" if record.method == "first-order" else "exact"
        self.plot.setTitle(f"step {record.step}, probe loss {record.base_loss:.3g} ({how})",
                           color=self.theme.foreground)

    def _brushes(self, effects: np.ndarray) -> list:
        up, down = pg.mkBrush(self.theme.accent), pg.mkBrush(self.theme.muted)
        return [up if e > 0 else down for e in effects]

    def mark(self, unit: int) -> None:
        """Outline ``unit``'s bar (the unit selected everywhere)."""
        if self.ablation is None:
            return
        self.chosen = unit
        pens = [None] * len(self.ablation.effects)
        if 0 <= unit < len(pens):
            pens[unit] = pen(self.theme.foreground, 2.0)
        self.bars.setOpts(pens=pens)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.chart.setBackground(theme.surface)
        self.set_ablation(self.ablation)

    # -- user input ------------------------------------------------------------------------
    def _item_changed(self, item: QListWidgetItem) -> None:
        if not self._filling:
            self.toggled.emit(self.list.row(item), item.checkState() == Qt.Checked)

    def _remove(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.edits):
            self.removed.emit(row)

    def _bar_clicked(self, event) -> None:
        if self.ablation is None or event.button() != Qt.LeftButton:
            return
        vb = self.plot.vb
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        unit = int(round(vb.mapSceneToView(event.scenePos()).x()))
        if 0 <= unit < len(self.ablation.effects):
            self.unit_chosen.emit(self.ablation.layer, unit)


class Interventions(QObject):
    """The window's interventions: the dock, the list the training process applies, and
    where their records go (the panels, the gradients overlay, the figure captions)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.edits: tuple[Intervention, ...] = ()
        self.lesion = False
        self.showing = False  # a counterfactual is on show (the first one selects the edited unit)
        # The last list asked for: changes made before its answer build on it, not on the last
        # accepted one (two quick additions keep both); a refusal goes back to the accepted list.
        self.wanted: tuple[tuple[Intervention, ...], bool] = ((), False)
        self.widget = WhatIfDock(window.theme)
        self.dock = window._dock("what-if", "What if", self.widget)
        window.addDockWidget(Qt.LeftDockWidgetArea, self.dock)
        window.tabifyDockWidget(window.experiment_dock, self.dock)
        window.experiment_dock.raise_()
        w = self.widget
        w.toggled.connect(self.toggle)
        w.removed.connect(self.remove)
        w.cleared.connect(lambda: self.propose((), False))
        w.lesion_changed.connect(lambda on: self.propose(self.wanted[0], on))
        w.rank_requested.connect(self.rank)
        w.unit_chosen.connect(self.select_unit)
        for panel in window.panels.values():
            actions = getattr(panel, "what_if", None)
            if actions is not None and hasattr(actions, "requested"):
                actions.requested.connect(self.add)
        gradients = window.panels.get("gradients")
        plot = getattr(gradients, "norm_plot", None)  # the ||dL/dh_t|| plot, if the panel has one
        self.overlay = GradientOverlay(plot) if plot is not None else None
        window.run_built.connect(self.on_built)

    # -- records -----------------------------------------------------------------------------
    def on_built(self, info: RunInfo) -> None:
        self.edits, self.lesion = tuple(info.interventions), bool(info.lesion)
        self.wanted = (self.edits, self.lesion)
        self.widget.set_interventions(self.edits, self.lesion)
        self.widget.set_layers(info.num_layers)
        self.widget.set_ablation(None)
        self._show(None)
        if self.edits:
            self.dock.raise_()

    def take(self, record: Any) -> None:
        """A record from the training process (the window hands it every one)."""
        if isinstance(record, StepRecord):
            record = record.counterfactual
        if isinstance(record, CounterfactualRecord):
            self.widget.set_loss(record)
            if self.overlay is not None:
                self.overlay.show(record)
            first = next(iter(enabled(self.edits)), None)
            if not self.showing and first is not None and first.units:  # the edited unit, on show
                self.select_unit(first.layer, first.units[0])
            self.showing = True
        elif isinstance(record, AblationRecord):
            self.widget.set_ablation(record)
            self.dock.raise_()

    def _show(self, record: CounterfactualRecord | None) -> None:
        """``record`` to the panels (None: no counterfactual any more) and the captions."""
        if record is not None:
            self.window._on_records([record])
        else:
            for panel in self.window.panels.values():
                panel.on_counterfactual(None)
                panel.invalidate()
            self.widget.set_loss(None)
            self.showing = False
            if self.overlay is not None:
                self.overlay.show(None)
        on = enabled(self.edits)
        text = "what if: " + "; ".join(e.describe() for e in on) if on else ""
        if on and self.lesion:
            text += " (a lesion: also while training)"
        for panel in self.window.panels.values():
            panel.what_if_caption = text

    # -- changes -----------------------------------------------------------------------------
    def add(self, edit: Intervention) -> None:
        edits, lesion = self.wanted
        self.propose((*edits, edit), lesion)

    def toggle(self, index: int, on: bool) -> None:
        edits, lesion = self.wanted
        if 0 <= index < len(edits):
            edits = list(edits)
            edits[index] = toggled(edits[index], on)
            self.propose(tuple(edits), lesion)

    def remove(self, index: int) -> None:
        edits, lesion = self.wanted
        if 0 <= index < len(edits):
            self.propose(edits[:index] + edits[index + 1:], lesion)

    def propose(self, edits: tuple[Intervention, ...], lesion: bool) -> None:
        """Ask the training process to apply ``edits``; the dock follows when it accepts."""
        controller = self.window.controller
        if controller is None:
            self.window.status.showMessage("There is no model yet: build an experiment first.", 8000)
            self.widget.set_interventions(self.edits, self.lesion)
            return
        self.wanted = (edits, lesion)
        controller.call(partial(jobs.set_interventions, edits=edits, lesion=lesion),
                        partial(self._applied, edits, lesion))

    def _applied(self, edits: tuple[Intervention, ...], lesion: bool, result: JobResult) -> None:
        if self.window.controller is None:
            return
        if result.failure is not None:
            self.window.status.showMessage(result.failure.message, 15000)
            self.wanted = (self.edits, self.lesion)
            self.widget.set_interventions(self.edits, self.lesion)  # e.g. a switch the user flipped
            return
        self.edits, self.lesion = edits, lesion and bool(enabled(edits))
        if self.window.run_info is not None:  # what exports (experiment.json) describe
            self.window.run_info = replace(self.window.run_info, interventions=self.edits, lesion=self.lesion)
        self.widget.set_interventions(self.edits, self.lesion)
        if self.edits:
            self.dock.raise_()
        self._show(result.value)

    def rank(self, layer: int, method: str = "exact") -> None:
        controller = self.window.controller
        if controller is None:
            return
        self.widget.rank.setEnabled(False)
        controller.call(partial(jobs.rank_units, layer=layer, method=method), self._ranked)

    def _ranked(self, result: JobResult) -> None:
        self.widget.rank.setEnabled(True)
        if result.failure is not None:
            self.window.status.showMessage(result.failure.message, 15000)
            return
        self.take(result.value)

    def select_unit(self, layer: int, unit: int) -> None:
        """Show ``unit`` of ``layer`` in every panel that shows units."""
        for panel in self.window.panels.values():
            show = getattr(panel, "show_unit", None)
            if show is not None:
                show(layer, unit)
        self.widget.mark(unit)

    def apply_theme(self, theme: Theme) -> None:
        self.widget.apply_theme(theme)
