"""Compare: RNN vs LSTM vs GRU trained side by side on the same experiment and seed.

Start trains three models, one per cell kind, from the window's experiment with only the
cell changed (core.compare, in a worker thread): same seed, same batches. Losses are
overlaid (faint: every step; bold: the mean of the last 10 steps), with the task's target
and baseline; gradients through time after the last step are overlaid on a log scale,
which is where the kinds differ most. The table says what each kind costs (parameters,
time per step) and what it reached (final loss, steps until the task's target).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
)

from app.compare_worker import CompareRunner
from app.panels.base import Panel
from app.panels.plots import add_legend, hline, long_curve, message, new_plot, pen
from app.panels.training import baseline_text, place
from app.theme import FONT_POINTS, Theme, cell_color, ui_font
from core.compare import (
    FINAL_WINDOW,
    KINDS,
    CompareRecord,
    CompareRow,
    KindInfo,
    running_mean,
    summarize,
)

DEFAULT_STEPS = 300
TABLE_SECONDS = 0.5  # while running, the table is rebuilt at most this often
COLUMNS = ("cell", "parameters", "time / step", f"final loss (mean of last {FINAL_WINDOW})", "steps to target")


class ComparePanel(Panel):
    name = "compare"
    title = "Compare cells"
    instruments = frozenset()

    def build(self) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train rnn, lstm and gru on this experiment and seed, side by side")
        self.start_button.clicked.connect(self.toggle)
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setSingleStep(100)
        self.steps.setValue(DEFAULT_STEPS)
        self.steps.setSuffix(" steps each")
        self.status = QLabel("")
        for w in (self.start_button, self.steps, self.status):
            self.options.addWidget(w)
        t = self.theme
        view = self.add_view(pg.GraphicsLayoutWidget(), stretch=4)
        self.loss_plot = new_plot(view.ci, t, row=0, col=0, x="step", y="loss", title="Training loss")
        self.grad_plot = new_plot(view.ci, t, row=0, col=1, x="time step t",
                                  y="‖∂L/∂h<sub>t</sub>‖", title="Gradients through time, after the last step")
        for plot in (self.loss_plot, self.grad_plot):
            plot.setLogMode(y=True)
            plot.getAxis("left").setWidth(64)
        # one legend, bottom left, where falling losses leave room (colours are the same in both)
        add_legend(self.loss_plot, offset=(10, -10))
        self.baseline = hline(self.loss_plot, t.baseline)
        self.target = hline(self.loss_plot, t.target, style=Qt.DotLine)
        for line in (self.baseline, self.target):  # labels stay legible over the curves
            line.label.fill = pg.mkBrush(t.surface + "D8")
            line.setZValue(30)
        # Every step, drawn at ~2 points a pixel column (a 100,000-step comparison keeps all
        # its data); the noisy faint curve unantialiased, as the training panel's loss.
        self.raw = {k: long_curve(self.loss_plot, pen=pen(cell_color(k) + "38", 1), antialias=False)
                    for k in KINDS}
        self.smooth = {k: long_curve(self.loss_plot, pen=pen(cell_color(k), 2.6), name=k) for k in KINDS}
        self.grads = {k: self.grad_plot.plot(pen=pen(cell_color(k), 2.6)) for k in KINDS}
        self.grad_message = message(self.grad_plot, t)
        self.table = QTableWidget(len(KINDS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setFont(ui_font(FONT_POINTS + 2))
        self.table.horizontalHeader().setFont(ui_font(FONT_POINTS + 1, bold=True))
        self.layout().addWidget(self.table)
        self.runner = CompareRunner(self)
        self.runner.began.connect(self._began)
        self.runner.records_ready.connect(self._records)
        self.runner.ended.connect(self._ended)
        self.infos: list[KindInfo] = []
        self.records: list[CompareRecord] = []
        self.rows: list[CompareRow] = []
        self.state = "idle"
        self._started_at = 0.0
        self._table_at = 0.0
        self._fit_table()

    # -- commands ------------------------------------------------------------------------------
    def toggle(self) -> None:
        """Start a comparison, or stop the one running."""
        if self.runner.running:
            self.stop()
        else:
            self.start()

    def start(self, steps: int | None = None) -> None:
        if self.run is None or self.runner.running:
            return
        if steps is not None:
            self.steps.setValue(steps)
        self._forget()
        self.state = "running"
        self._started_at = time.perf_counter()
        self.start_button.setText("Stop")
        self.steps.setEnabled(False)
        self.status.setText("building rnn, lstm and gru…")
        self.runner.start(self.run.experiment, self.steps.value())

    def stop(self) -> None:
        self.runner.stop()
        self.status.setText("stopping after this step…")

    def shutdown(self) -> None:
        """Stop the comparison thread (the window calls this when it closes)."""
        self.runner.shutdown()

    def run_now(self, experiment, steps: int) -> None:
        """Compare synchronously in this thread (screenshots and scripts; the GUI uses ``start``)."""
        from core.compare import Comparison

        self._forget()
        self.steps.setValue(steps)
        comparison = Comparison(experiment)
        self._began(comparison.infos())
        self._records(list(comparison.run(steps)))
        self._ended("done")

    def prepare_shot(self, trainer) -> None:
        """Before a screenshot: a comparison as long as the shot's training (at least 50 steps)."""
        self.run_now(trainer.experiment, max(trainer.step_count, 50))
        self.refresh(force=True)

    # -- data from the runner -------------------------------------------------------------------
    def _forget(self) -> None:
        self.infos, self.records, self.rows = [], [], []
        self._dirty = True

    def _began(self, infos: list[KindInfo]) -> None:
        self.infos = list(infos)
        self._dirty = True

    def _records(self, records: list[CompareRecord]) -> None:
        self.records.extend(records)
        self._dirty = True

    def _ended(self, how: str) -> None:
        self.state = "idle"
        self.start_button.setText("Start")
        self.steps.setEnabled(True)
        seconds = time.perf_counter() - self._started_at if self._started_at else 0.0
        done = {"done": "done", "stopped": "stopped"}.get(how)
        self.status.setText(f"{done} in {seconds:.0f} s" if done and seconds else (done or how))
        self._table_at = 0.0
        self.refresh(force=True)

    def clear(self) -> None:
        """A new run was built: an old comparison no longer describes it."""
        if self.runner.running:
            self.runner.shutdown()  # within a step; its last queued records are dropped
            self._ended("stopped")
        self._forget()
        self.status.setText("")
        self.start_button.setEnabled(True)

    # -- drawing -----------------------------------------------------------------------------------
    def redraw(self) -> None:
        run = self.run
        exp = run.experiment if run else None
        self.note.setText(f"{run.task_title} · seed {exp.seed} · {exp.hidden_size} units" if run else "")
        baseline, target = (run.baseline, run.target) if run else (None, None)
        place(self.baseline, baseline, True,
              baseline_text(run.baseline_label, baseline) if baseline is not None else "")
        place(self.target, target, True, f"solved ≤ {target:.3g}" if target is not None else "")
        by_kind: dict[str, list[CompareRecord]] = {k: [] for k in KINDS}
        for r in self.records:
            if r.seconds > 0 and not r.diverged:
                by_kind[r.kind].append(r)
        grads = False
        for kind in KINDS:
            mine = by_kind[kind]
            steps = np.array([r.step for r in mine], dtype=np.float64)
            losses = np.array([r.loss for r in mine], dtype=np.float64)
            positive = np.maximum(losses, 1e-12)
            self.raw[kind].setData(steps, positive)
            self.smooth[kind].setData(steps, np.maximum(running_mean(losses), 1e-12))
            last = next((r.gradients for r in reversed(self.records)
                         if r.kind == kind and r.gradients is not None), None)
            if last is not None:
                norms = np.maximum(last.norms[-1], 1e-30)
                self.grads[kind].setData(np.arange(len(norms)), norms)
                grads = True
            else:
                self.grads[kind].setData([], [])
        self.grad_message.setText("" if grads else (
            "Gradients through time appear when the comparison ends" if self.state == "running" or not self.records
            else "This task has no gradients-through-time probe"))
        self.grad_message.setVisible(not grads)
        if grads:
            self.grad_plot.enableAutoRange()
        self._progress(by_kind)
        now = time.perf_counter()
        if self.state != "running" or now - self._table_at > TABLE_SECONDS:
            self._table_at = now
            self.rows = summarize(self.infos, self.records) if self.infos else []
            self._fill_table()

    def _progress(self, by_kind: dict[str, list[CompareRecord]]) -> None:
        if self.state != "running":
            return
        done = min((len(v) for v in by_kind.values()), default=0)
        self.status.setText(f"training rnn, lstm and gru on the same batches: step {done} of {self.steps.value()}")

    def _fill_table(self) -> None:
        target = self.infos[0].target if self.infos else None
        header = f"steps to target (≤ {target:.3g})" if target else "steps to target"
        self.table.setHorizontalHeaderItem(4, QTableWidgetItem(header))
        rows = {row.kind: row for row in self.rows}
        for i, kind in enumerate(KINDS):
            row = rows.get(kind)
            cells = [f"●  {kind}", "", "", "", ""]
            if row is not None:
                cells[1:] = [f"{row.param_count:,}",
                             f"{row.seconds_per_step * 1000:.1f} ms" if math.isfinite(row.seconds_per_step) else "—",
                             f"{row.final_loss:.4g}" if math.isfinite(row.final_loss) else "—",
                             "—" if row.steps_to_target is None else f"{row.steps_to_target:,}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter if j else Qt.AlignLeft | Qt.AlignVCenter)
                if j == 0:
                    item.setForeground(QColor(cell_color(kind)))
                    font = ui_font(FONT_POINTS + 2, bold=True)
                    item.setFont(font)
                self.table.setItem(i, j, item)

    def _fit_table(self) -> None:
        self._fill_table()
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(i) for i in range(len(KINDS)))
        self.table.setFixedHeight(height + 2 * self.table.frameWidth() + 2)

    def table_text(self) -> list[list[str]]:
        """The table as text, row by row (tests read it as a user would)."""
        return [[self.table.item(i, j).text() for j in range(len(COLUMNS))] for i in range(len(KINDS))]

    def export_data(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for kind in KINDS:
            mine = [r for r in self.records if r.kind == kind and r.seconds > 0]
            out[f"{kind}_step"] = np.array([r.step for r in mine])
            out[f"{kind}_loss"] = np.array([r.loss for r in mine])
        return out

    def on_theme(self, theme: Theme) -> None:
        self.grad_message.setColor(theme.muted)
