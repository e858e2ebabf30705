"""Compare: three kinds trained in a process of their own on one seed; curves and table read their records."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QFontMetrics
from PySide6.QtWidgets import QStyle

from app.panels.compare.panel import ComparePanel
from app.theme import LIGHT, cell_color
from core.names import CELL_KINDS as KINDS
from core.training.compare import CompareRecord, KindInfo, running_mean, summarize
from core.training.trainer import Trainer
from tests.app.drawn import drawn_labels


@pytest.fixture
def panel(qtbot, lstm_run):
    p = ComparePanel(LIGHT)
    qtbot.addWidget(p)
    p.resize(1400, 800)
    p.reset(lstm_run[0])
    yield p
    p.shutdown()


def test_three_kinds_train_on_one_seed_and_the_table_matches_their_records(qtbot, panel):
    experiment = panel.run.experiment
    with qtbot.waitSignal(panel.runner.ended, timeout=120_000) as ended:
        panel.start(steps=12)
        assert panel.start_button.text() == "Stop" and panel.runner.running
    assert ended.args == ["done"]
    assert not panel.runner.running and panel.start_button.text() == "Start"
    for kind in KINDS:  # the same losses as three independent trainers with the seed
        alone = Trainer(experiment.replace(cell=kind))
        expected = [alone.step().loss for _ in range(12)]
        assert [r.loss for r in panel.records if r.kind == kind and r.seconds > 0] == expected
    rows = summarize(panel.infos, panel.records)
    assert panel.rows == rows
    table = panel.table_text()
    for row, text in zip(rows, table, strict=True):
        assert text[0].endswith(row.kind)
        assert text[1] == f"{row.param_count:,}"
        assert text[2] == f"{row.seconds_per_step * 1000:.1f} ms"
        assert text[3] == f"{row.final_loss:.4g}"
        assert text[4] == ("—" if row.steps_to_target is None else f"{row.steps_to_target:,}")
    assert [r.param_count for r in rows] == [Trainer(experiment.replace(cell=k)).param_count for k in KINDS]
    for kind in KINDS:  # curves: the records, in the kind's colour everywhere
        losses = np.array([r.loss for r in panel.records if r.kind == kind and r.seconds > 0])
        np.testing.assert_allclose(panel.smooth[kind].yData, running_mean(losses), rtol=1e-12)
        assert panel.smooth[kind].opts["pen"].color().name().upper() == cell_color(kind).upper()
        assert len(panel.grads[kind].yData) == experiment.seq_len


def test_stop_ends_the_comparison_early_and_start_can_run_again(qtbot, panel):
    panel.start(steps=100_000)
    qtbot.waitUntil(lambda: len(panel.records) >= 6, timeout=120_000)
    with qtbot.waitSignal(panel.runner.ended, timeout=60_000) as ended:
        panel.start_button.click()  # Stop
    assert ended.args == ["stopped"]
    steps = max(r.step for r in panel.records)
    assert steps < 100_000
    assert all(any(r.kind == k and r.gradients is not None for r in panel.records) for k in KINDS)
    assert "stopped" in panel.status.text()
    with qtbot.waitSignal(panel.runner.ended, timeout=120_000):
        panel.start(steps=3)
    assert max(r.step for r in panel.records) == 3  # a fresh comparison


def test_shutdown_during_a_run_ends_the_process_in_time(qtbot, panel):
    panel.start(steps=100_000)
    qtbot.waitUntil(lambda: len(panel.records) >= 3, timeout=120_000)
    process = panel.runner.process
    assert panel.runner.shutdown(timeout=10)
    assert not process.is_alive() and not panel.runner.running


def test_a_new_run_clears_the_comparison(qtbot, panel, gru_padding_run):
    panel.run_now(panel.run.experiment, 2)
    assert len(panel.records) == 2 * len(KINDS) and panel.table_text()[0][1] != ""
    panel.reset(gru_padding_run[0])
    panel.refresh(force=True)
    assert panel.records == [] and panel.table_text()[0][1] == ""


def test_closing_the_window_stops_a_comparison(qtbot, window):
    compare = window.panels["compare"]
    compare.start(steps=100_000)
    qtbot.waitUntil(lambda: len(compare.records) >= 3, timeout=120_000)
    process = compare.runner.process
    window.close()
    assert not process.is_alive() and not compare.runner.running


def test_a_new_run_during_a_comparison_stops_it_and_drops_its_last_records(qtbot, panel, gru_padding_run):
    from PySide6.QtCore import QCoreApplication

    panel.start(steps=100_000)
    qtbot.waitUntil(lambda: len(panel.records) >= 3, timeout=120_000)
    panel.reset(gru_padding_run[0])
    assert not panel.runner.running and panel.start_button.text() == "Start"
    qtbot.wait(300)  # whatever the old comparison still sends arrives, and is dropped
    QCoreApplication.processEvents()
    assert panel.records == []
    with qtbot.waitSignal(panel.runner.ended, timeout=120_000):  # the same process compares again
        panel.start(steps=2)
    assert len(panel.records) == 2 * len(KINDS)


def test_loss_curves_over_100k_steps_draw_about_two_points_a_pixel_and_keep_them_all(qtbot, panel):
    from core.training.compare import CompareRecord

    steps = 100_000
    losses = 0.2 + 0.1 * np.cos(np.arange(steps) / 700.0)
    losses[54_321] = 5.0  # a spike must survive the reduction
    panel.show()
    panel.runner.records_ready.emit([CompareRecord(kind, step + 1, float(loss), 0.01, False)
                                     for step, loss in enumerate(losses) for kind in KINDS])
    assert panel.refresh()
    panel.grab()  # paint: the view takes the new range, the curves what they will draw
    width = panel.loss_plot.vb.width()
    for kind in KINDS:
        for curve in (panel.raw[kind], panel.smooth[kind]):
            x, y = curve.curve.getData()  # the points the painted line goes through
            assert 100 < len(x) <= 2.1 * width + 4, (kind, len(x), width)
            assert curve.xData.size == steps  # every step kept
        assert panel.raw[kind].curve.getData()[1].max() == pytest.approx(np.log10(5.0))  # log axis: log10 units
    assert len(panel.export_data()["gru_loss"]) == steps


class CountedRecord(CompareRecord):
    """A record that notes in ``READS`` each time the panel reads one of its fields."""

    def __getattribute__(self, name):
        if not name.startswith("__"):
            READS.append(id(self))
        return super().__getattribute__(name)


READS: list[int] = []


def fake_comparison(first: int, last: int, loss) -> list[CompareRecord]:
    """Round-robin records for steps first..last, ``loss(step)`` for every kind."""
    return [CountedRecord(kind, step, float(loss(step)), 0.01 + 0.001 * (step % 7), False)
            for step in range(first, last + 1) for kind in KINDS]


def test_more_records_cost_work_for_the_new_records_only(qtbot, panel):
    infos = [KindInfo(kind, 100 + i, 0.05, 0.2) for i, kind in enumerate(KINDS)]
    panel.runner.began.emit(infos)
    old = fake_comparison(1, 3000, lambda step: 1.0 + 0.1 * np.sin(step))
    panel.runner.records_ready.emit(old)
    assert panel.refresh(force=True)  # idle: curves, gradients and table all redrawn
    new = fake_comparison(3001, 3300, lambda step: 0.01)  # the loss reaches the target here
    new += [CountedRecord("rnn", 3301, float("nan"), 0.01, True),  # rnn diverges: drawn no further
            CountedRecord("lstm", 3300, 0.01, 0.0, False), CountedRecord("gru", 3300, 0.01, 0.0, False)]  # closing
    READS.clear()
    panel.runner.records_ready.emit(new)
    assert panel.refresh(force=True)
    reads = set(READS)
    assert not reads & {id(r) for r in old}, "redrawing read records it had already taken in"
    assert len(READS) <= 8 * len(new)  # a few field reads per new record, however long the run
    every = old + new  # and what is drawn is what rebuilding from every record would draw
    assert panel.rows == summarize(infos, every)
    assert [row.steps_to_target for row in panel.rows] == [3010, 3010, 3010]  # 10 steps at the target
    exported = panel.export_data()
    for kind in KINDS:
        taken = [r for r in every if r.kind == kind and r.seconds > 0 and not r.diverged]
        np.testing.assert_array_equal(panel.raw[kind].xData, [r.step for r in taken])
        # (running_mean's cumulative sum over 3,300 steps drifts by ~1e-11; the panel sums 10 at a time)
        np.testing.assert_allclose(panel.smooth[kind].yData, running_mean([r.loss for r in taken]), rtol=1e-9)
        shown = [r for r in every if r.kind == kind and r.seconds > 0]
        np.testing.assert_array_equal(exported[f"{kind}_step"], [r.step for r in shown])
        np.testing.assert_array_equal(exported[f"{kind}_loss"], [r.loss for r in shown])


def assert_headers_and_legend_fit(panel) -> None:
    header = panel.table.horizontalHeader()
    metrics = QFontMetrics(header.font())
    margin = header.style().pixelMetric(QStyle.PM_HeaderMargin, None, header)
    for j in range(panel.table.columnCount()):
        lines = panel.table.horizontalHeaderItem(j).text().split("\n")
        need = max(metrics.horizontalAdvance(line) for line in lines) + 2 * margin
        assert header.sectionSize(j) >= need, (lines, header.sectionSize(j), need)  # not cut off
        assert header.height() >= len(lines) * metrics.height(), lines
    legend = panel.loss_plot.legend
    assert legend.isVisible() and [label.text for _, label in legend.items] == list(KINDS)
    box = legend.sceneBoundingRect()
    assert box.width() > 0 and legend.scene().sceneRect().contains(box)
    for plot in (panel.loss_plot, panel.grad_plot):  # over no curve: outside both plots' data
        assert not box.intersects(plot.vb.sceneBoundingRect()), (box, plot.vb.sceneBoundingRect())
    for _, label in legend.items:  # in the theme's colour (a slide's, after an export staged it)
        assert QColor(panel.theme.foreground).name() in label.item.toHtml().lower()
    assert panel.grad_message.isVisible()  # no gradients yet: the message says so, all of it in the plot
    assert panel.grad_plot.vb.sceneBoundingRect().contains(panel.grad_message.sceneBoundingRect())


def test_table_headers_and_the_legend_fit_in_the_window_and_on_a_slide(qtbot, panel):
    from app.export.figure import Figure, caption_lines, staged

    panel.runner.began.emit([KindInfo(kind, 1000, 0.0123, 0.2) for kind in KINDS])
    panel.runner.records_ready.emit(fake_comparison(1, 300, lambda step: 0.2 + 1 / step))
    panel.show()
    panel.refresh(force=True)
    qtbot.waitUntil(lambda: assert_headers_and_legend_fit(panel))
    with staged(panel, Figure(), caption_lines(panel)):  # a 1920x1080 slide
        assert_headers_and_legend_fit(panel)


def test_the_slide_caption_says_each_setting_once(panel):
    from app.export.figure import caption_lines

    panel.refresh(force=True)
    note = [part.strip() for part in panel.note.text().split("·")]
    assert note == ["Adding problem", "seed 0", "8 units"]  # the panel's own summary, in the window
    title, details = caption_lines(panel, step=6)
    parts = [part.strip() for part in details.split("·")]
    assert title == "Compare cells"
    assert len(parts) == len(set(parts)), details  # no setting twice
    assert all(part in parts for part in [*note, "LSTM", "T 12", "step 6"]), details  # and none lost


def tick_label_rects(axis) -> dict[str, QRectF]:
    """The tick labels ``axis`` draws, with their scene rectangles (as pyqtgraph lays them out)."""
    return {text: rect for rect, text in drawn_labels(axis) if text}


def assert_log_labels_apart(panel) -> None:
    for plot in (panel.loss_plot, panel.grad_plot):
        rects = sorted(tick_label_rects(plot.getAxis("left")).items(), key=lambda item: item[1].top())
        assert len(rects) >= 2, rects
        for (a, ra), (b, rb) in zip(rects, rects[1:]):
            assert not ra.intersects(rb), (a, ra, b, rb)


def test_log_tick_labels_do_not_run_into_each_other_in_the_window_or_on_a_slide(qtbot, panel):
    from app.export.figure import Figure, caption_lines, staged
    from core.records import GradientRecord

    panel.runner.began.emit([KindInfo(kind, 1000, 0.0123, 0.167) for kind in KINDS])
    # the adding-lstm slide's losses: from 1.3 down to 0.09, about a decade and a bit
    norms = np.geomspace(3e-11, 0.3, 50)  # and its gradients through time, after the last step
    closing = [CompareRecord(kind, 300, 0.1, 0.0, False, GradientRecord(300, (norms,), norms, 0.6, None, None))
               for kind in KINDS]
    panel.runner.records_ready.emit(fake_comparison(1, 300, lambda step: 0.09 + 1.2 / step) + closing)
    panel.show()
    panel.refresh(force=True)
    qtbot.waitUntil(lambda: assert_log_labels_apart(panel))  # in the window, once laid out
    with staged(panel, Figure(), caption_lines(panel)):  # a 1920x1080 slide
        assert_log_labels_apart(panel)
        loss = tick_label_rects(panel.loss_plot.getAxis("left"))
        assert {"1", "0.1"} <= set(loss), sorted(loss)  # the decades are kept


def test_dark_theme_restyles_the_reference_labels_and_headers_fit_a_laptop_panel(qtbot, panel):
    """After switching to the dark theme the baseline and target labels kept their light
    boxes, and at a laptop's panel width the table headers were cut off."""
    from app.theme import DARK

    panel.runner.began.emit([KindInfo(kind, 1000, 0.0123, 0.2) for kind in KINDS])
    panel.runner.records_ready.emit(fake_comparison(1, 300, lambda step: 0.2 + 1 / step))
    panel.resize(560, 500)
    panel.show()
    panel.apply_theme(DARK)
    panel.refresh(force=True)
    for line, color in ((panel.baseline, DARK.baseline), (panel.target, DARK.target)):
        assert line.isVisible()
        assert line.label.fill.color().name() == QColor(DARK.surface).name()
        assert line.label.color.name() == QColor(color).name()
    qtbot.waitUntil(lambda: assert_headers_and_legend_fit(panel))
    for plot in (panel.loss_plot, panel.grad_plot):  # titles are not cut either
        title = plot.titleLabel
        assert title.item.boundingRect().width() <= plot.vb.width() + plot.getAxis("left").width(), title.text
