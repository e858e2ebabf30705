"""Dynamics panel: the hidden state's trajectories in PC space, fixed points, eigenvalues.

Left: the states of the probe (bold, coloured by time step or by input symbol) and of a
few more sequences (faint) projected on two principal components of all the states, the
current time step ringed as the scrubber moves, and the fixed points of the update
s -> F(s, x*) under the chosen constant input x*: filled = stable, diamond = marginal (the
largest |λ| within 1e-3 of 1: a direction is held, a memory), hollow = unstable; smaller
markers are slow points (q above the tolerance, smaller the larger q). Right: the
eigenvalues of dF/ds at the selected point (click one) in the complex plane, with the unit
circle: outside it a direction grows, inside it decays by |λ| a step, complex pairs rotate.

The numbers come from core.instruments.dynamics in the training process (``Trainer.dynamics``);
choosing another input asks the training process for them at once (app.training.jobs).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel

from app.panels.axes import space_bar_ticks
from app.panels.base import Panel
from app.panels.legends import legend_row
from app.panels.plots import fit_left_axes, message, new_plot, pen
from app.theme import OKABE_ITO, SERIES, Theme, colormap
from app.training.jobs import dynamics_under
from core.records import DynamicsRecord

AXES = ((0, 1), (0, 2), (1, 2))  # principal components plotted against each other
COLOR_BY = ("time step", "input")
STABLE, MARGINAL, UNSTABLE = OKABE_ITO["blue"], OKABE_ITO["purple"], OKABE_ITO["vermillion"]
BIG, SMALL = 15.0, 6.0  # marker sizes: fixed points, the slowest slow points


def marker_sizes(q: np.ndarray, tol: float, slow_decades: float = 5.0) -> np.ndarray:
    """[P] marker sizes: BIG for fixed points (q <= tol), shrinking linearly in log10 q to
    SMALL at ``slow_decades`` decades above the tolerance."""
    q = np.asarray(q, np.float64)
    above = np.log10(np.maximum(q, tol) / tol) if tol > 0 else np.zeros_like(q)
    return BIG - (BIG - SMALL) * np.clip(above / slow_decades, 0.0, 1.0)


def point_kinds(record: DynamicsRecord) -> np.ndarray:
    """[P] "stable", "marginal" or "unstable" (marginal points also count as stable)."""
    return np.where(record.marginal, "marginal", np.where(record.stable, "stable", "unstable"))


def nearest(points: np.ndarray, state: np.ndarray | None) -> int:
    """Index of the point [P, S] nearest ``state`` [S] (0 when there is none to follow)."""
    if state is None or len(points) == 0 or points.shape[1] != len(state):
        return 0
    return int(np.argmin(np.linalg.norm(points - state, axis=1)))


class DynamicsPanel(Panel):
    name = "dynamics"
    title = "Dynamics"
    draws = frozenset({DynamicsRecord})
    instruments = frozenset({"dynamics"})

    def build(self) -> None:
        self.input = QComboBox()
        self.input.setToolTip("The constant input x* whose fixed points are shown")
        self.input.addItem("zero")
        self.input.activated.connect(lambda _: self.choose_input(self.input.currentText()))
        self.axes = QComboBox()
        self.axes.addItems([f"PC{a + 1} – PC{b + 1}" for a, b in AXES])
        self.axes.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        self.color_by = QComboBox()
        self.color_by.addItems(COLOR_BY)
        self.color_by.setToolTip("Colour the probe's states by time step or by the input at that step")
        self.color_by.currentIndexChanged.connect(lambda _: self.refresh(force=True))
        for w in (QLabel("Input x*"), self.input, QLabel("Axes"), self.axes, QLabel("Colour"), self.color_by):
            self.options.addWidget(w)
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.view = view
        self.pc_plot = new_plot(view.ci, t, row=1, col=0, x="PC1", y="PC2")
        self.eig_plot = new_plot(view.ci, t, row=1, col=2, x="Re λ", y="Im λ")
        self.eig_plot.setAspectLocked(True)
        fit_left_axes(self.pc_plot)
        fit_left_axes(self.eig_plot)
        view.ci.layout.setColumnStretchFactor(0, 3)
        view.ci.layout.setColumnStretchFactor(2, 2)
        self.bar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(t.sequential_map), interactive=False,
                                   width=10, colorMapMenu=False)
        view.ci.addItem(self.bar, row=1, col=1)
        self._space_bar_ticks = space_bar_ticks(self.bar)
        view.ci.layout.setColumnSpacing(1, 24)  # the bar's label "t" is not read with "Im λ"
        self.others = pg.ScatterPlotItem(size=3, pen=None)  # the other sequences' states: the cloud
        self.pc_plot.addItem(self.others)
        self.line = self.pc_plot.plot(pen=pen(t.muted, 1.5))
        self.states = pg.ScatterPlotItem(size=6, pen=None)
        self.pc_plot.addItem(self.states)
        self.points = pg.ScatterPlotItem(hoverable=True, tip=self._tip)
        self.points.setZValue(10)
        self.points.sigClicked.connect(self._clicked)
        self.pc_plot.addItem(self.points)
        self.selected_ring = pg.ScatterPlotItem(size=BIG + 10, symbol="o", brush=None)
        self.selected_ring.setZValue(9)
        self.pc_plot.addItem(self.selected_ring)
        self.now = pg.ScatterPlotItem(size=16, symbol="o", brush=None)
        self.now.setZValue(12)
        self.pc_plot.addItem(self.now)
        self.legend = legend_row(view.ci, self.pc_plot, t, row=0, col=0, columns=5)  # above: covers no state
        self._legend_samples = {kind: pg.ScatterPlotItem(size=BIG * 0.8) for kind in ("stable", "marginal", "unstable")}
        self.symbol_samples: list[pg.ScatterPlotItem] = []
        self.circle = self.eig_plot.plot(pen=pen(t.muted, 1.5, Qt.DashLine))
        angle = np.linspace(0, 2 * math.pi, 181)
        self.circle.setData(np.cos(angle), np.sin(angle))
        self.eigenvalues = pg.ScatterPlotItem(size=8)
        self.eig_plot.addItem(self.eigenvalues)
        self.empty = message(self.pc_plot, t)
        self.engine = None
        self.record: DynamicsRecord | None = None
        self.selected = 0
        self._selected_state: np.ndarray | None = None
        self._asked = False  # a request for this run's dynamics is in flight
        self._tag = 0
        self._legend_key: tuple = ()
        self._legend_kinds: tuple = ()
        self._first = True
        self._autorange = False
        self._labels: tuple = ()
        self._title_key: tuple = ()
        self._reach = 0.0
        self._brushes: tuple = ((), None)  # (key, brushes) of the probe's states
        self.style_items(t)

    # -- data -----------------------------------------------------------------------------------
    def connect_engine(self, controller) -> None:
        """``controller``: the window's TrainingController (dynamics are computed where the model is)."""
        self.engine = controller

    def clear(self) -> None:
        self.record = None
        self.selected = 0
        self._selected_state = None
        self._asked = False
        self._tag += 1  # what an earlier run still had in flight is dropped
        self._first = True  # the first record picks the colouring: by input where there are symbols
        self.input.clear()
        self.input.addItem("zero")
        self.note.setText("")

    @property
    def available(self) -> bool:
        return self.run is not None and not self.run.experiment.is_seq2seq

    def on_dynamics(self, record: DynamicsRecord) -> None:
        if self.record is not None and self.record.points.shape[1:] == record.points.shape[1:]:
            self._selected_state = self.record.points[self.selected] if len(self.record.points) else None
        self.record = record
        self.selected = nearest(record.points, self._selected_state)
        if self._first:
            self._first = False
            self.color_by.blockSignals(True)
            self.color_by.setCurrentIndex(1 if len(record.inputs) > 1 else 0)
            self.color_by.blockSignals(False)

    def choose_input(self, name: str) -> None:
        """Show the fixed points under ``name`` (asks the training process when there is one)."""
        if self.engine is None or not self.available:
            return
        self._tag += 1
        self._asked = True
        self.note.setText(f"finding fixed points under input {name}…")
        self.engine.call(partial(dynamics_under, input_name=name), partial(self._job_done, self._tag))

    def _job_done(self, tag: int, result) -> None:
        if tag != self._tag:
            return
        if result.failure is not None:
            self.note.setText(result.failure.message)
            return
        if result.value is not None:
            self.update_record(result.value)
            self.refresh()

    def prepare_shot(self, trainer) -> None:
        """Compute the dynamics with ``trainer`` now (screenshots and export have no engine)."""
        if self.available:
            self.update_record(dynamics_under(trainer, self.input.currentText() or "zero"))
            self.refresh(force=True)

    def export_data(self) -> dict[str, np.ndarray]:
        r = self.record
        if r is None:
            return {}
        return {
            "trajectories": r.trajectories.copy(), "valid": r.valid.copy(), "labels": np.array(r.labels),
            "symbols": r.symbols.copy(), "inputs": np.array(r.inputs), "input_values": r.input_values.copy(),
            "explained_variance": r.explained.copy(), "components": r.components.copy(), "mean": r.mean.copy(),
            "input_name": np.array(r.input_name), "input": r.input.copy(),
            "points": r.points.copy(), "projected": r.projected.copy(), "q": r.q.copy(), "fixed": r.fixed.copy(),
            "stable": r.stable.copy(), "marginal": r.marginal.copy(),
            "eigenvalues_real": r.eigenvalues.real.copy(), "eigenvalues_imag": r.eigenvalues.imag.copy(),
        }

    # -- drawing --------------------------------------------------------------------------------
    def redraw(self) -> None:
        r = self.record
        if r is None:
            if not self.available:
                self._say("No hidden-state dynamics for encoder-decoder models.")
            else:
                self._say("waiting for the dynamics…")
                if self.engine is not None and not self._asked:
                    self.choose_input(self.input.currentText() or "zero")
            return
        self.empty.hide()
        self._asked = False
        if self._autorange:  # after the message, follow the data again (not on every frame: a zoom stays)
            self._autorange = False
            self.pc_plot.enableAutoRange()
        self._sync_inputs(r)
        a, b = AXES[self.axes.currentIndex()] if r.trajectories.shape[-1] >= 3 else (0, min(1, r.trajectories.shape[-1] - 1))
        pct = tuple(f"PC{i + 1} ({100 * r.explained[i]:.0f}%)" if i < len(r.explained) else f"PC{i + 1}"
                    for i in (a, b))
        if pct != self._labels:  # setLabel lays the plot out again: only on change
            self._labels = pct
            self.pc_plot.setLabel("bottom", pct[0])
            self.pc_plot.setLabel("left", pct[1])
        traj = r.trajectories
        rest = r.valid[1:]
        self.others.setData(traj[1:, :, a][rest], traj[1:, :, b][rest])
        ok = r.valid[0]
        self.line.setData(traj[0, ok, a], traj[0, ok, b])
        self.states.setData(traj[0, ok, a], traj[0, ok, b], brush=self._state_brushes(r)[ok])
        self._draw_points(r, a, b)
        self._draw_cursor()
        self._draw_eigenvalues(r)
        n_fixed = int(r.fixed.sum())
        kinds = point_kinds(r)[r.fixed]
        counts = ", ".join(f"{int((kinds == k).sum())} {k}" for k in ("stable", "marginal", "unstable")
                           if (kinds == k).any())
        slow = len(r.q) - n_fixed
        # short: the options row is clipped at the panel's right edge in a 1280-pixel window
        self.note.setText("  ·  ".join(x for x in (
            f"{n_fixed} fixed" + (f" ({counts})" if counts else ""), f"{slow} slow" if slow else "",
            f"step {r.step}") if x))
        self.note.setToolTip(f"Under input {r.input_name}: {n_fixed} fixed points (q ≤ {r.tolerance:g}) and {slow} "
                             f"slow points, found from {r.starts} starts in {r.elapsed:.2f} s")

    def _say(self, text: str) -> None:
        self.empty.setText(text)
        self.empty.show()
        self.pc_plot.setRange(xRange=(-1, 1), yRange=(-1, 1), padding=0)  # the text at the centre
        self.empty.setPos(0, 0)
        self._autorange = True

    def _sync_inputs(self, r: DynamicsRecord) -> None:
        names = [self.input.itemText(i) for i in range(self.input.count())]
        wanted = list(r.inputs) + ([r.input_name] if r.input_name not in r.inputs else [])
        if names != wanted:
            self.input.blockSignals(True)
            self.input.clear()
            self.input.addItems(wanted)
            self.input.blockSignals(False)
        if self.input.currentText() != r.input_name:
            self.input.blockSignals(True)
            self.input.setCurrentText(r.input_name)
            self.input.blockSignals(False)

    def _state_brushes(self, r: DynamicsRecord) -> np.ndarray:
        """[T] brushes for the probe's states, by time step or by input (cached: a QBrush per
        step is most of a redraw's cost, and the colours change only with the probe)."""
        key = (self.color_by.currentIndex(), r.symbols[0].tobytes(), r.input_values[0].tobytes(), r.inputs,
               self.theme.name)
        if key != self._brushes[0]:
            self._brushes = (key, self._make_brushes(r))
        return self._brushes[1]

    def _make_brushes(self, r: DynamicsRecord) -> np.ndarray:
        T = r.trajectories.shape[1]
        by_input = self.color_by.currentIndex() == 1
        codes = r.symbols[0]
        if by_input and (codes >= 0).any():
            colors = [SERIES[c % len(SERIES)] if c >= 0 else self.theme.muted for c in codes]
            brushes = np.array([pg.mkBrush(c) for c in colors], dtype=object)
            self._key(("symbols", tuple(r.inputs[c] for c in sorted(set(codes.tolist())) if c >= 0)))
            return brushes
        if by_input:
            values = r.input_values[0]
            lo, hi = float(np.min(values)), float(np.max(values))
            self._key(("bar", "input", lo, hi))
            scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        else:
            self._key(("bar", "t", 0.0, float(max(T - 1, 1))))
            scaled = np.arange(T) / max(T - 1, 1)
        colors = colormap(self.theme.sequential_map).mapToQColor(scaled)
        return np.array([pg.mkBrush(c) for c in colors], dtype=object)

    def _key(self, key: tuple) -> None:
        """The colour key: a colour bar (time step or a continuous input) or input symbols."""
        if key == self._legend_key:
            return
        self._legend_key = key
        for sample in self.symbol_samples:
            self.legend.removeItem(sample)
        self.symbol_samples = []
        if key[0] == "bar":
            _, label, lo, hi = key
            self.bar.setLevels((lo, hi))
            self._space_bar_ticks()
            self.bar.setLabel("right", label)
            self.bar.show()
        else:
            self.bar.hide()
            for name in key[1]:
                code = list(self.record.inputs).index(name)
                sample = pg.ScatterPlotItem(size=8, brush=pg.mkBrush(SERIES[code % len(SERIES)]), pen=None)
                self.symbol_samples.append(sample)
                self.legend.addItem(sample, f"input {name}")

    def _draw_points(self, r: DynamicsRecord, a: int, b: int) -> None:
        if len(r.q) == 0:
            self.points.clear()
            self.selected_ring.clear()
            self._legend_entries(())
            return
        kinds = point_kinds(r)
        sizes = marker_sizes(r.q, r.tolerance)
        spots = []
        for i, (kind, size) in enumerate(zip(kinds, sizes, strict=True)):
            color = {"stable": STABLE, "marginal": MARGINAL, "unstable": UNSTABLE}[kind]
            spots.append({"pos": (r.projected[i, a], r.projected[i, b]), "size": float(size), "data": i,
                          "symbol": "d" if kind == "marginal" else "o",
                          "brush": pg.mkBrush(self.theme.surface if kind == "unstable" else color),
                          "pen": pen(color, 2)})
        self.points.setData(spots)
        self.selected = min(self.selected, len(r.q) - 1)
        s = self.selected
        self.selected_ring.setData([r.projected[s, a]], [r.projected[s, b]])
        self._legend_entries(tuple(k for k in ("stable", "marginal", "unstable") if (kinds == k).any()))

    def _legend_entries(self, kinds: tuple[str, ...]) -> None:
        if kinds == self._legend_kinds:  # legends are slow to rebuild: only on change
            return
        self._legend_kinds = kinds
        for sample in self._legend_samples.values():
            self.legend.removeItem(sample)
        for kind in kinds:
            self.legend.addItem(self._legend_samples[kind], kind)

    def _draw_cursor(self) -> None:
        r = self.record
        if r is None:
            return
        a, b = AXES[self.axes.currentIndex()] if r.trajectories.shape[-1] >= 3 else (0, min(1, r.trajectories.shape[-1] - 1))
        t = min(max(self.time_cursor, 0), r.trajectories.shape[1] - 1)
        self.now.setData([r.trajectories[0, t, a]], [r.trajectories[0, t, b]])

    def _draw_eigenvalues(self, r: DynamicsRecord) -> None:
        if len(r.q) == 0:
            self.eigenvalues.clear()
            self._title("no fixed point found", self.theme.muted)
            return
        ev = r.eigenvalues[self.selected]
        outside = np.abs(ev) > 1 + 1e-3
        brushes = [pg.mkBrush(UNSTABLE if o else STABLE) for o in outside]
        self.eigenvalues.setData(ev.real, ev.imag, brush=brushes, pen=None)
        # a short title: a long one sets the column's minimum width and squeezes the PC plot
        what = "fixed" if r.fixed[self.selected] else "slow"
        self._title(f"λ at {what} point {self.selected + 1}", self.theme.foreground)
        reach = max(1.15, float(np.abs(ev).max()) * 1.05)
        if reach != self._reach:
            self._reach = reach
            self.eig_plot.setRange(xRange=(-reach, reach), yRange=(-reach, reach), padding=0)

    def _title(self, text: str, color: str) -> None:
        if (text, color) != self._title_key:  # setTitle lays the plot out again: only on change
            self._title_key = (text, color)
            self.eig_plot.setTitle(text, color=color, size="9pt")

    def _tip(self, x: float, y: float, data: int) -> str:
        r = self.record
        if r is None or not 0 <= data < len(r.q):
            return ""
        what = "fixed" if r.fixed[data] else "slow"
        return (f"{what} point {data + 1}: {point_kinds(r)[data]}, q = {r.q[data]:.1e}, "
                f"largest |λ| = {abs(r.eigenvalues[data][0]):.4f}\nclick: its eigenvalues")

    def select_point(self, index: int) -> None:
        """Show the eigenvalues of point ``index`` (an index into ``record.points``)."""
        if self.record is None or not 0 <= index < len(self.record.q):
            return
        self.selected = index
        self.refresh(force=True)

    def _clicked(self, _item, spots, *_) -> None:
        if len(spots):
            self.select_point(int(spots[0].data()))

    def on_time_cursor(self, t: int) -> None:
        self._draw_cursor()

    def style_items(self, theme: Theme) -> None:
        self.line.setPen(pen(theme.muted, 1.5))
        self.others.setBrush(pg.mkBrush(theme.muted + "55"))
        self.now.setPen(pen(theme.cursor, 2.5))
        self.selected_ring.setPen(pen(theme.accent, 2, Qt.DashLine))
        self.circle.setPen(pen(theme.muted, 1.5, Qt.DashLine))
        for kind, sample in self._legend_samples.items():
            color = {"stable": STABLE, "marginal": MARGINAL, "unstable": UNSTABLE}[kind]
            sample.setData([0], [0], symbol="d" if kind == "marginal" else "o", pen=pen(color, 2),
                           brush=pg.mkBrush(theme.surface if kind == "unstable" else color))
        self.bar.axis.setPen(pen(theme.muted, 1))
        self.bar.axis.setTextPen(theme.foreground)

    def on_theme(self, theme: Theme) -> None:
        self._title_key = ()
        self.style_items(theme)
        self.bar.setColorMap(colormap(theme.sequential_map))
