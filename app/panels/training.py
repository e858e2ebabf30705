"""Training panel: loss and gradient norm against the step, with what they mean drawn in.

Loss is drawn against the task's baseline (the loss of a trivial predictor: doing better
means the network learned something) and its target (the loss that counts as solved). The
gradient norm is shown before clipping; clipped steps are marked, and steps where the
loss or gradient stopped being finite (divergence: the update was not applied) get a
vertical line in both plots. The dashed curve over the gradient norm is its running
median over the last steps (app.panels.median): the typical norm a clipping threshold is
chosen from (the Experiment dock's "clip = k × median").

Translation tasks get a third plot, of what the trainer measures on the held-out split every
few dozen steps: token accuracy teacher-forced (every token predicted from the true prefix)
against free running (greedy decoding, the model's own outputs fed back, compared position
by position), whose gap is what exposure bias costs, and exact match (dotted), which is the
same either way.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox

from app.panels.analysis import positive_for_log
from app.panels.axes import LogAxis
from app.panels.base import Panel
from app.panels.legends import LineKey, add_legend
from app.panels.median import MEDIAN_WINDOW, RunningMedian
from app.panels.plots import fit_left_axes, hline, long_curve, message, new_plot, pen, style_plot
from app.panels.series import Series
from app.theme import SERIES, Theme
from core.names import HELDOUT_METRICS
from core.records import StepRecord

MAX_DIVERGENCE_MARKS = 20
ROW_MIN = 40.0  # pixels of view box a plot needs to be read (three y labels a line apart, a curve)
EVAL_HIDDEN = "held-out plot hidden: no room (enlarge the panel)"


class TrainingPanel(Panel):
    name = "training"
    title = "Training"
    draws = frozenset({StepRecord})

    def build(self) -> None:
        self.log_loss = QCheckBox("Log loss")
        self.log_loss.setChecked(True)
        self.log_grad = QCheckBox("Log gradient norm")
        self.log_grad.setChecked(True)
        for box in (self.log_loss, self.log_grad):
            box.toggled.connect(self._axes_changed)
            self.options.addWidget(box)
        self.series = Series("step", "loss", "grad_norm", "grad_norm_clipped", "clipped", "diverged",
                             "grad_median")
        self.heldout = Series("step", *HELDOUT_METRICS)
        self.median = RunningMedian()
        self.metrics: dict[str, float] = {}
        view = self.add_view(pg.GraphicsLayoutWidget())
        self.view = view
        t = self.theme
        self.loss_plot = new_plot(view.ci, t, row=0, col=0, y="loss", left_axis=LogAxis("left"))
        self.grad_plot = new_plot(view.ci, t, row=1, col=0, x="step", y="‖∇‖ (before clipping)",
                                  left_axis=LogAxis("left"))
        self.grad_plot.setXLink(self.loss_plot)
        view.ci.layout.setRowStretchFactor(0, 3)
        view.ci.layout.setRowStretchFactor(1, 2)
        # held-out scores (translation tasks): in the layout only for them
        self.eval_plot = new_plot(view.ci, t, row=2, col=0, x="step", y="held-out accuracy")
        self.eval_plot.setXLink(self.loss_plot)
        self.eval_plot.setYRange(0, 1.02, padding=0)
        # three labels a line apart at the least height the row is shown at (ROW_MIN):
        # pyqtgraph's six ran into each other below ~90 px
        self.eval_plot.getAxis("left").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")], [(0.25, ""), (0.75, "")]])
        self.eval_plot.vb.setMouseEnabled(y=False)
        add_legend(self.eval_plot, offset=(10, 5), colCount=3)
        self.eval_curves = [self.eval_plot.plot(pen=pen(color, 2, style), symbol="o", symbolSize=5, symbolPen=None,
                                                symbolBrush=color, name=name)
                            # short, so the legend keeps to one row at laptop size (the axis and
                            # the note say these are held-out token accuracies)
                            for color, style, name in ((SERIES[2], Qt.SolidLine, "teacher-forced"),
                                                       (SERIES[3], Qt.SolidLine, "free running"),
                                                       (SERIES[0], Qt.DotLine, "exact match"))]
        view.ci.removeItem(self.eval_plot)
        self._eval_shown = False
        self._eval_squeezed = False  # held-out scores to show, and no room for their plot
        self._sizing = False
        view.sigDeviceRangeChanged.connect(self._fit_rows)  # (on the view's every resize)
        self.loss_plot.getAxis("bottom").setStyle(showValues=False)
        # The step axis grows in jumps (see step_extent), not with every step: regenerating an
        # axis's tick labels is the costliest part of a frame, and the x axis would change
        # on every frame of a run. Panning or zooming by hand stops the following.
        self.loss_plot.enableAutoRange(x=False)
        self._follow = True
        self.loss_plot.vb.sigRangeChangedManually.connect(self._stop_following)
        self.grad_plot.vb.sigRangeChangedManually.connect(self._stop_following)
        fit_left_axes(self.loss_plot, self.grad_plot)
        # Aliased: Qt strokes a thick antialiased zigzag (a noisy loss, downsampled by peaks)
        # at ~0.2 ms a point, so 1,000 steps cost 200 ms a frame and 20,000 steps near a
        # second; aliased, a few ms. long_curve (clip to view, peak downsampling) keeps about
        # two points a pixel column, so a long run draws as fast as a short one.
        # One curve, named by its axis ("loss"): the legend names only the reference lines.
        self.loss_curve = long_curve(self.loss_plot, pen=pen(t.loss), antialias=False)
        # The reference lines are named in a legend above the data: a name written on its
        # line lay over the curve, which hovers at the baseline once that much is learnt.
        add_legend(self.loss_plot, colCount=2)
        self.baseline = hline(self.loss_plot, t.baseline, label=None)
        self.target = hline(self.loss_plot, t.target, label=None, style=Qt.DotLine)
        add_legend(self.grad_plot, offset=(-10, 5), colCount=3)
        self.grad_curve = long_curve(self.grad_plot, pen=pen(t.grad_norm, 1.5), name="‖∇‖", antialias=False)
        self.median_curve = long_curve(self.grad_plot, pen=pen(t.foreground, 1.5, Qt.DashLine),
                                       name=f"median of the last {MEDIAN_WINDOW} steps", antialias=False)
        # Each clipped step: a segment from the gradient's norm down to the clipped norm, so
        # the cut shows. One path of segments (not a scatter of markers, whose per-point
        # cost made a run with thousands of clipped steps redraw ten times slower).
        self.clip_marks = self.grad_plot.plot(pen=pen(t.clipped, 2), connect="pairs", antialias=False)
        self._clip_key: tuple[int, bool] = (0, False)
        self.clip_line = hline(self.grad_plot, t.clipped, label=None)
        self.keys = {line: LineKey(line, plot.legend) for line, plot in
                     ((self.baseline, self.loss_plot), (self.target, self.loss_plot), (self.clip_line, self.grad_plot))}
        self.divergence: list[pg.InfiniteLine] = []
        self.waiting = message(self.loss_plot, t)  # before the first step: say so, not an empty plot
        self.waiting.setText("No training steps yet: press Step or Run")
        self.waiting.show()
        self._axes_changed()

    # -- data -----------------------------------------------------------------------------------
    def clear(self) -> None:
        self.series.clear()
        self.heldout.clear()
        self.median.clear()
        self._clip_key = (-1, False)
        self._follow = True
        self.loss_plot.setXRange(0, 10, padding=0)
        self.metrics = {}
        self._fit_rows()  # no eval plot until the first held-out scores (a translation run's step 50)

    def _fit_rows(self, *_) -> None:
        """The held-out plot as a third row when there are scores and every row keeps
        ``ROW_MIN`` of view box; else it is left out and the note says so (the note gives the
        latest scores either way). At 1280x720 it was a 30 px strip of overlapping labels
        that squeezed the loss plot to a line (issue 14)."""
        if self._sizing:
            return
        self._sizing = True
        try:
            want = len(self.heldout) > 0
            self._show_eval_plot(want)
            if want:
                self._lay_out()
                if min(plot.vb.height() for plot in (self.loss_plot, self.grad_plot, self.eval_plot)) < ROW_MIN:
                    self._show_eval_plot(False)
                    self._lay_out()
        finally:
            self._sizing = False
        squeezed = len(self.heldout) > 0 and not self._eval_shown
        if squeezed != self._eval_squeezed:
            self._eval_squeezed = squeezed
            self._draw_note()

    def _lay_out(self) -> None:
        """Lay the rows out now (a caller reads their sizes at once); twice, as a legend row
        takes its height from its plot's new width."""
        for _ in range(2):
            self.view.ci.setGeometry(self.view.range)
            self.view.ci.layout.activate()
            for plot in (self.loss_plot, self.grad_plot, self.eval_plot):
                plot.layout.activate()

    def _show_eval_plot(self, show: bool) -> None:
        if show == self._eval_shown:
            return
        self._eval_shown = show
        if show:
            self._draw_eval()  # (shown by a resize, with no redraw to come while paused)
            self.view.ci.addItem(self.eval_plot, row=2, col=0)
            self.view.ci.layout.setRowStretchFactor(2, 2)
            self.grad_plot.getAxis("bottom").setLabel("")
        else:
            self.view.ci.removeItem(self.eval_plot)
            self.grad_plot.getAxis("bottom").setLabel("step")
        # the step axis's values under the lowest plot only: the plots are x-linked, and the
        # pixels go to the three plots (a 1920x1080 window had no room for the third)
        self.grad_plot.getAxis("bottom").setStyle(showValues=not show)

    def on_step(self, record: StepRecord) -> None:
        median = self.median.append(record.grad_norm)
        self.series.append(record.step, record.loss, record.grad_norm, record.grad_norm_clipped,
                           float(record.clipped), float(record.diverged), median)
        # the latest value of every metric: held-out ones come every few dozen steps only
        self.metrics.update(record.metrics)
        if HELDOUT_METRICS[0] in record.metrics:
            self.heldout.append(record.step, *(record.metrics.get(k, np.nan) for k in HELDOUT_METRICS))

    def export_data(self) -> dict[str, np.ndarray]:
        data = self.series.to_dict()
        if len(self.heldout):
            data.update({f"heldout_{k}" if k == "step" else k: v for k, v in self.heldout.to_dict().items()})
        return data

    # -- drawing --------------------------------------------------------------------------------
    def _axes_changed(self) -> None:
        self.loss_plot.setLogMode(y=self.log_loss.isChecked())
        self.grad_plot.setLogMode(y=self.log_grad.isChecked())
        self.refresh(force=True)

    def redraw(self) -> None:
        s = self.series
        steps = s.column("step")
        loss, grad = s.column("loss"), s.column("grad_norm")
        log_loss, log_grad = self.log_loss.isChecked(), self.log_grad.isChecked()
        self.loss_curve.setData(steps, positive_for_log(loss) if log_loss else loss, connect="finite")
        self.grad_curve.setData(steps, positive_for_log(grad) if log_grad else grad, connect="finite")
        median = s.column("grad_median")
        self.median_curve.setData(steps, positive_for_log(median) if log_grad else median, connect="finite")
        if (len(self.heldout) > 0) != (self._eval_shown or self._eval_squeezed):
            self._fit_rows()  # the first scores: a third row if it fits
        self._draw_eval()
        self._draw_clipping(steps, grad, log_grad)
        self._follow_steps(steps)
        self._draw_reference_lines(log_loss, log_grad)
        self._draw_divergence(steps[s.column("diverged") > 0])
        self.waiting.setVisible(not len(steps))
        self._draw_note()

    def _draw_eval(self) -> None:
        if self._eval_shown:
            for curve, name in zip(self.eval_curves, HELDOUT_METRICS, strict=True):
                curve.setData(self.heldout.column("step"), self.heldout.column(name))

    def _stop_following(self, *_) -> None:
        self._follow = False

    def _follow_steps(self, steps: np.ndarray) -> None:
        if not self._follow or not len(steps):
            return
        lo, hi = self.loss_plot.vb.viewRange()[0]
        last = float(steps[-1])
        extent = step_extent(last)
        if last > hi or hi > extent or lo != 0:
            self.loss_plot.setXRange(0, extent, padding=0)

    def _draw_clipping(self, steps: np.ndarray, grad: np.ndarray, log: bool) -> None:
        clipped = self.series.column("clipped") > 0
        key = (int(clipped.sum()), log)
        if key == self._clip_key:
            return  # no new clipped step: the segments stand
        self._clip_key = key
        if not key[0]:
            self.clip_marks.setData([], [])
            return
        x = np.repeat(steps[clipped], 2)
        y = np.column_stack((grad[clipped], self.series.column("grad_norm_clipped")[clipped])).ravel()
        self.clip_marks.setData(x, positive_for_log(y) if log else y, connect="pairs")

    def _draw_reference_lines(self, log_loss: bool, log_grad: bool) -> None:
        run = self.run
        baseline = None if run is None else run.baseline
        target = None if run is None else run.target
        clip = 0.0 if run is None else run.experiment.clip
        names = {self.baseline: baseline_text(run.baseline_label, baseline) if run and baseline is not None else "",
                 self.target: f"solved ≤ {target:.3g}" if target is not None else "",
                 self.clip_line: f"clip at {clip:g}"}
        place(self.baseline, baseline, log_loss)
        place(self.target, target, log_loss)
        place(self.clip_line, clip if clip > 0 else None, log_grad)
        for line, name in names.items():
            self.keys[line].set(name if line.isVisible() else "")

    def _draw_divergence(self, steps: np.ndarray) -> None:
        steps = steps[:MAX_DIVERGENCE_MARKS]
        while len(self.divergence) < 2 * len(steps):
            plot = self.loss_plot if len(self.divergence) % 2 == 0 else self.grad_plot
            line = pg.InfiniteLine(angle=90, movable=False, pen=pen(self.theme.diverged, 2),
                                   label="diverged" if plot is self.loss_plot else None,
                                   labelOpts={"position": 0.9, "color": self.theme.diverged})
            plot.addItem(line, ignoreBounds=True)
            self.divergence.append(line)
        for i, line in enumerate(self.divergence):
            visible = i // 2 < len(steps)
            line.setVisible(visible)
            if visible:
                line.setValue(float(steps[i // 2]))

    def _draw_note(self) -> None:
        parts = [f"{k.replace('_', ' ')} {v:.1%}" if 0 <= v <= 1 else f"{k} {v:.3g}"
                 for k, v in sorted(self.metrics.items()) if k not in HELDOUT_METRICS]
        if len(self.heldout):
            step, forced, free, exact = (self.heldout.column(k)[-1] for k in ("step", *HELDOUT_METRICS))
            parts.append(f"held-out at step {int(step)}: tokens teacher-forced {forced:.1%}, free running "
                         f"{free:.1%}; exact match {exact:.1%}")
        clipped = int(self.series.column("clipped").sum()) if len(self.series) else 0
        if self._eval_squeezed:
            parts.append(EVAL_HIDDEN)
        if clipped:
            parts.append(f"clipped {clipped} of {len(self.series)} steps")
        median = self.median.value
        if median == median:
            shown = f"{median:.3g}" if median < 1000 else f"{median:,.0f}"
            parts.append(f"median ‖∇‖ (last {min(len(self.median), MEDIAN_WINDOW)} steps) {shown}")
        self.note.setText("  ·  ".join(parts))

    def on_theme(self, theme: Theme) -> None:
        if not self._eval_shown:  # out of the layout, which apply_theme styles: it came back in the old theme
            style_plot(self.eval_plot, theme)
        self.waiting.setColor(theme.muted)
        self.loss_curve.setPen(pen(theme.loss))
        self.grad_curve.setPen(pen(theme.grad_norm, 1.5))
        self.median_curve.setPen(pen(theme.foreground, 1.5, Qt.DashLine))
        self.clip_marks.setPen(pen(theme.clipped, 2))
        for line, color in ((self.baseline, theme.baseline), (self.target, theme.target),
                            (self.clip_line, theme.clipped)):
            line.setPen(pen(color, 1.5, line.pen.style()))
            self.keys[line].restyle()


def step_extent(step: float) -> float:
    """The x range for ``step`` steps: the next of 1, 1.5, 2, 3, 4, 5, 6, 8 x 10^k above
    it with 5% to spare, so the axis changes a few times a decade, not every step."""
    need = max(step * 1.05, 10.0)
    power = 10.0 ** math.floor(math.log10(need))
    for m in (1, 1.5, 2, 3, 4, 5, 6, 8, 10):
        if m * power >= need:
            return m * power
    return 10 * power


def baseline_text(label: str, value: float) -> str:
    """'predict 0 = 0.5', but no repeat when the task's label already states the value."""
    number = f"{value:.3g}"
    label = label or "baseline"
    return label if number in label else f"{label} = {number}"


def place(line: pg.InfiniteLine, value: float | None, log: bool, label: str = "") -> None:
    """Show a horizontal reference line at ``value`` (in log10 units on a log axis)."""
    if value is None or not math.isfinite(value) or (log and value <= 0):
        line.hide()
        return
    line.show()  # first: a hidden label ignores new text
    position = math.log10(value) if log else value
    if line.value() != position:  # each move re-renders the label: only when it changed
        line.setValue(position)
    text = getattr(line, "label", None)  # (a line named in a legend has none)
    if text is not None and (text.format != label or not text.toPlainText()):
        text.setFormat(label)
