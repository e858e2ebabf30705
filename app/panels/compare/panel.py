"""Compare: RNN vs LSTM vs GRU trained side by side on the same experiment and seed.

Start trains three models, one per cell kind, from the window's experiment with only the
cell changed (core.training.compare, in a process of its own): same seed, same batches. Losses are
overlaid (faint: every step; bold: the mean of the last 10 steps), with the task's target
and baseline; gradients through time after the last step are overlaid on a log scale,
which is where the kinds differ most. The table says what each kind costs (parameters,
time per step) and what it reached (final loss, steps until the task's target).

Records are taken in as they arrive, into one column store per kind (step, loss, seconds
and the 10-step mean), so a redraw after 100,000 steps costs what one after 100 does: the
curves are views of those columns and the table reads them, never the records again.
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

from app.panels.axes import LogAxis
from app.panels.base import Panel
from app.panels.legends import legend_row
from app.panels.plots import fit_left_axes, hline, long_curve, message, new_plot, pen
from app.panels.series import Series
from app.panels.training import baseline_text, place
from app.theme import FONT_POINTS, Theme, cell_color, ui_font
from app.training.controller import CompareController
from core.names import CELL_KINDS
from core.records import GradientRecord
from core.training.compare import FINAL_WINDOW, CompareRecord, CompareRow, KindInfo

DEFAULT_STEPS = 300
TABLE_SECONDS = 0.5  # while running, the table is rebuilt at most this often
# Headers in two short lines: a long line is cut off once the five columns share a laptop
# panel's width (about 100 px each at 1280x720); the tooltips say the rest.
COLUMNS = ("cell", "parameters", "time\n/ step", f"final loss\n(last {FINAL_WINDOW})", "steps to\ntarget")
TIPS = ("", "Trainable parameters of the model", "Median wall time of one optimiser update",
        f"Mean training loss of the last {FINAL_WINDOW} steps",
        f"The first step at which the mean loss of the last {FINAL_WINDOW} steps is at or below the task's target")


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
        self.loss_plot = new_plot(view.ci, t, row=1, col=0, x="step", y="loss", title="Training loss",
                                  left_axis=LogAxis("left"))
        self.grad_plot = new_plot(view.ci, t, row=1, col=1, x="time step t", y="‖∂L/∂h<sub>t</sub>‖",
                                  title="Gradients through time", left_axis=LogAxis("left"))
        for plot in (self.loss_plot, self.grad_plot):
            plot.setLogMode(y=True)
            fit_left_axes(plot)
        for column in (0, 1):  # the two plots share the width, whatever their titles
            view.ci.layout.setColumnStretchFactor(column, 1)
        # One legend for both plots (the colours are the same), in a row above them: inside
        # a plot no corner stays clear of three kinds' curves (a flat loss fills them all).
        legend_row(view.ci, self.loss_plot, t, row=0, col=0, colspan=2, columns=len(CELL_KINDS))
        self.baseline = hline(self.loss_plot, t.baseline)
        self.target = hline(self.loss_plot, t.target, style=Qt.DotLine)
        for line in (self.baseline, self.target):  # labels stay legible over the curves
            line.label.fill = pg.mkBrush(t.surface + "D8")
            line.setZValue(30)
        # Every step, drawn at ~2 points a pixel column (a 100,000-step comparison keeps all
        # its data); the noisy faint curve unantialiased, as the training panel's loss.
        self.raw = {k: long_curve(self.loss_plot, pen=pen(cell_color(k) + "38", 1), antialias=False)
                    for k in CELL_KINDS}
        self.smooth = {k: long_curve(self.loss_plot, pen=pen(cell_color(k), 2.6), name=k) for k in CELL_KINDS}
        self.grads = {k: self.grad_plot.plot(pen=pen(cell_color(k), 2.6)) for k in CELL_KINDS}
        self.grad_message = message(self.grad_plot, t)
        self.table = QTableWidget(len(CELL_KINDS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for j, tip in enumerate(TIPS):
            self.table.horizontalHeaderItem(j).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Fixed)  # sized by _fit_columns
        self.table.horizontalHeader().setMinimumSectionSize(24)
        self.table.viewport().installEventFilter(self)  # a new width: share it out again
        self.table.setFont(ui_font(FONT_POINTS + 2))
        self.table.horizontalHeader().setFont(ui_font(FONT_POINTS + 1, bold=True))
        self.layout().addWidget(self.table)
        self.runner = CompareController(self)
        self.runner.began.connect(self._began)
        self.runner.records_ready.connect(self._records)
        self.runner.ended.connect(self._ended)
        self.infos: list[KindInfo] = []
        self.records: list[CompareRecord] = []  # as they came (the columns below are drawn)
        # Per kind, the steps drawn (closing and diverged records left out) with their
        # FINAL_WINDOW-step mean ("smooth"), each appended once when its record arrives.
        self.series = {k: Series("step", "loss", "seconds", "smooth") for k in CELL_KINDS}
        self._diverged: dict[str, list[tuple[int, int, float]]] = {k: [] for k in CELL_KINDS}  # (row, step, loss)
        self._gradients: dict[str, GradientRecord | None] = dict.fromkeys(CELL_KINDS)
        self._reached: dict[str, int | None] = dict.fromkeys(CELL_KINDS)  # the first step at the target
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
        """End the comparison process (the window calls this when it closes)."""
        self.runner.shutdown()

    def run_now(self, experiment, steps: int) -> None:
        """Compare synchronously in this thread (screenshots and scripts; the GUI uses ``start``)."""
        from core.training.compare import Comparison

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
        for kind in CELL_KINDS:
            self.series[kind].clear()
            self._diverged[kind] = []
            self._gradients[kind] = self._reached[kind] = None
        self._dirty = True

    def _began(self, infos: list[KindInfo]) -> None:
        self.infos = list(infos)
        self._dirty = True

    def _records(self, records: list[CompareRecord]) -> None:
        """Take in a batch: each record is read once, here, and appended to its kind's columns."""
        self.records.extend(records)
        first = {k: len(s) for k, s in self.series.items()}
        for r in records:
            kind = r.kind
            if r.gradients is not None:
                self._gradients[kind] = r.gradients
            if r.seconds <= 0:  # a closing record repeats its kind's last step
                continue
            if r.diverged:  # the update was refused: exported, not drawn
                self._diverged[kind].append((len(self.series[kind]), r.step, r.loss))
                continue
            self.series[kind].append(r.step, r.loss, r.seconds, np.nan)
        for kind, start in first.items():
            if len(self.series[kind]) > start:
                self._extend_mean(kind, start)
        self._dirty = True

    def _extend_mean(self, kind: str, start: int) -> None:
        """Fill the running mean (core.compare.running_mean) of rows ``start:``, reading only
        them and the FINAL_WINDOW - 1 rows before; note the first step it reaches the target."""
        s, w = self.series[kind], FINAL_WINDOW
        loss, smooth = s.column("loss"), s.column("smooth")
        lo = max(start - (w - 1), 0)
        sums = np.concatenate(([0.0], np.cumsum(loss[lo:])))
        ends = np.arange(start, len(s)) - lo + 1  # prefix index just past each row
        counts = np.minimum(np.arange(start, len(s)) + 1, w)
        smooth[start:] = (sums[ends] - sums[ends - counts]) / counts
        target = next((info.target for info in self.infos if info.kind == kind), None)
        if target is not None and self._reached[kind] is None:
            full = max(start, w - 1)  # rows with a whole window of steps behind them
            hit = np.flatnonzero(smooth[full:] <= target)
            if hit.size:
                self._reached[kind] = int(s.column("step")[full + hit[0]])

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
            self.runner.abandon()  # ends after the step in progress; what it still sends is dropped
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
        grads = False
        for kind in CELL_KINDS:
            s = self.series[kind]
            steps = s.column("step")
            self.raw[kind].setData(steps, np.maximum(s.column("loss"), 1e-12))
            self.smooth[kind].setData(steps, np.maximum(s.column("smooth"), 1e-12))
            last = self._gradients[kind]
            if last is not None:
                norms = np.maximum(last.norms[-1], 1e-30)
                self.grads[kind].setData(np.arange(len(norms)), norms)
                grads = True
            else:
                self.grads[kind].setData([], [])
        self.grad_message.setText("" if grads else (
            "Gradients through time appear\nwhen the comparison ends" if self.state == "running" or not self.records
            else "This task has no\ngradients-through-time probe"))
        self.grad_message.setVisible(not grads)
        if grads:
            self.grad_plot.enableAutoRange()
        else:  # the message in the middle of a fixed range (at the default x = 0 half of it was cut off)
            self.grad_plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.grad_message.setPos(0.5, 0.5)
        self._progress()
        now = time.perf_counter()
        if self.state != "running" or now - self._table_at > TABLE_SECONDS:
            self._table_at = now
            self.rows = [self._row(info) for info in self.infos]
            self._fill_table()

    def _row(self, info: KindInfo) -> CompareRow:
        """What core.compare.summarize makes of the records, from the kind's columns."""
        s = self.series[info.kind]
        n = len(s)
        return CompareRow(
            kind=info.kind, param_count=info.param_count, steps=int(s.column("step")[-1]) if n else 0,
            # the median sorts every step's time (numpy, at most twice a second while running)
            seconds_per_step=float(np.median(s.column("seconds"))) if n else math.nan,
            # a contiguous copy, so the sum is done in summarize's order, to the last bit
            final_loss=float(s.column("loss")[-FINAL_WINDOW:].copy().mean()) if n else math.nan,
            steps_to_target=self._reached[info.kind])

    def _progress(self) -> None:
        if self.state != "running":
            return
        done = min((len(s) for s in self.series.values()), default=0)
        self.status.setText(f"training rnn, lstm and gru on the same batches: step {done} of {self.steps.value()}")

    def _fill_table(self) -> None:
        target = self.infos[0].target if self.infos else None
        header = f"steps to\nloss ≤ {target:.3g}" if target else COLUMNS[4]
        item = QTableWidgetItem(header)
        item.setToolTip(TIPS[4])
        self.table.setHorizontalHeaderItem(4, item)
        rows = {row.kind: row for row in self.rows}
        for i, kind in enumerate(CELL_KINDS):
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
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Each column as wide as its header and cells need, the rest of the width shared
        equally (equal columns cut the long headers off at a laptop panel's width)."""
        table, header = self.table, self.table.horizontalHeader()
        need = [max(header.sectionSizeFromContents(j).width(), table.sizeHintForColumn(j))
                for j in range(table.columnCount())]
        spare = max(table.viewport().width() - sum(need), 0)
        for j, width in enumerate(need):
            header.resizeSection(j, width + spare // len(need))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt naming)
        if watched is self.table.viewport() and event.type() == event.Type.Resize:
            self._fit_columns()
        return False

    def _fit_table(self) -> None:
        self._fill_table()
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(i) for i in range(len(CELL_KINDS)))
        self.table.setFixedHeight(height + 2 * self.table.frameWidth() + 2)

    def table_text(self) -> list[list[str]]:
        """The table as text, row by row (tests read it as a user would)."""
        return [[self.table.item(i, j).text() for j in range(len(COLUMNS))] for i in range(len(CELL_KINDS))]

    def export_data(self) -> dict[str, np.ndarray]:
        """Every update of each kind, diverged ones included, in step order."""
        out: dict[str, np.ndarray] = {}
        for kind in CELL_KINDS:
            s, refused = self.series[kind], self._diverged[kind]
            rows = [row for row, _, _ in refused]
            out[f"{kind}_step"] = np.insert(s.column("step").astype(np.int64), rows, [step for _, step, _ in refused])
            out[f"{kind}_loss"] = np.insert(s.column("loss"), rows, [loss for _, _, loss in refused])
        return out

    def on_theme(self, theme: Theme) -> None:
        self.grad_message.setColor(theme.muted)
        for line, color in ((self.baseline, theme.baseline), (self.target, theme.target)):
            line.setPen(pen(color, 1.5, line.pen.style()))
            line.label.setColor(color)
            line.label.fill = pg.mkBrush(theme.surface + "D8")  # a light box on a dark plot read as a hole
            line.label.update()
