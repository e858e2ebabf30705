"""Each panel on its own, fed real trainer records: what it draws, exports and shows."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from app.panels import PANELS, panel_class, panel_names
from app.panels.base import Panel
from app.panels.training import baseline_text
from tests.app.conftest import fed as fed_panel
from tests.app.drawn import drawn_labels

MINE = ("training", "hidden", "gates", "gradients", "spectrum")


def fed(qtbot, name, run, theme=None):
    return fed_panel(qtbot, name, run, theme=theme or "light", show=True)


def test_registry_names_classes_and_rejects_unknown_names():
    assert set(MINE) <= set(panel_names())
    assert all(issubclass(cls, Panel) and cls.name and cls.title for cls in PANELS)
    assert len(set(panel_names())) == len(PANELS)
    with pytest.raises(ValueError, match="unknown panel 'nope'; choose one of training"):
        panel_class("nope")


@pytest.mark.parametrize("name", MINE)
def test_every_panel_draws_exports_and_follows_the_cursor(qtbot, name, lstm_run):
    panel = fed(qtbot, name, lstm_run)
    data = panel.export_data()
    assert data and all(isinstance(v, np.ndarray) for v in data.values())
    panel.set_time_cursor(3)
    assert all(line.value() == 3 for line in panel.cursors)
    assert panel.plot_widgets()
    assert not panel.refresh()  # nothing new: no redraw
    panel.apply_theme(__import__("app.theme", fromlist=["DARK"]).DARK)
    assert panel.refresh()


def test_training_panel_marks_baseline_clipping_and_divergence(qtbot, lstm_run):
    import dataclasses

    info, records = lstm_run
    info = dataclasses.replace(info, experiment=info.experiment.replace(clip=0.01))
    steps = [r for r in records if hasattr(r, "loss")]
    records = records[:-1] + [dataclasses.replace(steps[-1], clipped=True, step=steps[-1].step + 1),
                              dataclasses.replace(steps[-1], diverged=True, loss=float("nan"),
                                                  grad_norm=float("inf"), step=steps[-1].step + 2)]
    panel = fed(qtbot, "training", (info, records))
    named = [label.text for plot in (panel.loss_plot, panel.grad_plot) for _, label in plot.legend.items]
    assert panel.baseline.isVisible() and any("0.167" in name for name in named)
    assert panel.clip_line.isVisible() and "clip at 0.01" in named
    assert len(panel.clip_marks.xData) == 2  # one segment: the norm down to the clipped norm
    assert sum(line.isVisible() for line in panel.divergence) == 2  # one in each plot
    panel.log_loss.setChecked(False)
    assert abs(panel.baseline.value() - 1 / 6) < 1e-9
    assert "clipped" in panel.note.text()


@pytest.mark.parametrize("size", [(422, 296), (713, 350)])  # the Training dock at 1280x720 and 1920x1080
def test_training_reference_lines_are_named_where_no_curve_runs(qtbot, lstm_run, size):
    """Failed before (issue 14, the real window at 1280x720): "predict 1 (MSE 0.167)" was
    written on its line, over the loss curve that hovers at that line once the network has
    learnt the baseline. The names are in the plots' legends, above the data."""
    import dataclasses

    from PySide6.QtWidgets import QApplication

    from app.window.offscreen import render
    from tests.app.invariants import legend_problems

    info, records = lstm_run
    info = dataclasses.replace(info, experiment=info.experiment.replace(clip=0.5))
    last = [r for r in records if hasattr(r, "loss")][-1]
    noise = np.random.default_rng(0).normal(0.0, 0.02, 300)
    steps = [dataclasses.replace(last, step=i + 1, loss=info.baseline * (1 + n), grad_norm=0.5 * (1 + 5 * n),
                                 clipped=False) for i, n in enumerate(noise)]
    panel = fed_panel(qtbot, "training", (info, steps), size=size, show=True)
    render(panel, *size, QApplication.instance())  # laid out and painted as an export or shot is
    assert legend_problems(panel) == []
    names = {plot: [label.text for _, label in plot.legend.items] for plot in (panel.loss_plot, panel.grad_plot)}
    assert baseline_text(info.baseline_label, info.baseline) in names[panel.loss_plot]
    assert "clip at 0.5" in names[panel.grad_plot]
    target = f"solved ≤ {info.target:.3g}"
    assert (target in names[panel.loss_plot]) == panel.target.isVisible()


def test_hidden_panel_selects_units_and_shows_padding_leak(qtbot, gru_padding_run):
    panel = fed(qtbot, "hidden", gru_padding_run)
    probe = panel.probe
    assert not probe.valid.all() and probe.unmasked_hidden is not None
    assert panel.unmasked.isEnabled()
    assert any(item.isVisible() for item in panel.shading[0]._items)
    masked = panel.heatmap.image.image.copy()
    panel.unmasked.setChecked(True)
    assert not np.array_equal(masked, panel.heatmap.image.image)  # padding changed the state
    panel.select_unit(2)
    panel.select_unit(3, add=True)
    assert panel.units == [2, 3]
    assert [t.isVisible() for t in panel.traces[:3]] == [True, True, False]
    assert panel.time_axis.labels == probe.labels


def test_gates_panel_rows_follow_the_cell_kind(qtbot, lstm_run, gru_padding_run, rnn_run):
    panel = fed(qtbot, "gates", lstm_run)
    assert panel.gate_names == ("input", "forget", "cell", "output", "c")
    data = panel.export_data()
    assert data["forget_shut_fraction"].shape == (8,)
    assert 0 <= data["forget_open_fraction"].min() and data["forget_open_fraction"].max() <= 1
    info, records = gru_padding_run
    panel.reset(info)
    for r in records:
        panel.update_record(r)
    panel.refresh()
    assert panel.gate_names == ("reset", "update", "new")
    assert "z:" in panel.note.text()
    info, records = rnn_run
    panel.reset(info)
    for r in records:
        panel.update_record(r)
    panel.refresh()
    assert panel.gate_names == () and panel.placeholder.isVisible()


def test_gradient_and_spectrum_panels_for_a_two_layer_truncated_rnn(qtbot, rnn_run):
    grads = fed(qtbot, "gradients", rnn_run)
    assert len(grads.curves) == 2
    assert any(item.isVisible() for item in grads.chunks._items)  # tbptt=4 over T=12
    assert grads.export_data()["history_log10_norm"].shape[0] == 12
    assert "truncated every 4" in grads.note.text()
    spectrum = fed(qtbot, "spectrum", rnn_run)
    assert spectrum.bound.isVisible()  # 1/gamma for a tanh RNN
    # named in the legend above the data: written on the line at mid-plot, "1/γ = 1" lay over
    # the singular values of exploding-rnn (the journey's label invariant found it)
    bound = spectrum.record.bound
    assert f"1/γ = {bound:g}" in [label.text for _, label in spectrum.sv_plot.legend.items]
    assert getattr(spectrum.bound, "label", None) is None
    assert spectrum.layer.isVisible() and spectrum.layer.count() == 2
    assert "regime" in spectrum.note.text()


def test_the_step_axis_grows_in_jumps_and_stops_following_after_a_manual_zoom(qtbot, lstm_run):
    from app.panels.training import step_extent

    assert [step_extent(s) for s in (1, 9, 10, 95, 96, 140, 1000)] == [10, 10, 15, 100, 150, 150, 1500]
    panel = fed(qtbot, "training", lstm_run)
    assert panel.loss_plot.vb.viewRange()[0] == [0, 10]
    panel.loss_plot.vb.sigRangeChangedManually.emit([True, False])
    assert not panel._follow


def assert_padding_named_above_the_shading(panel, span: tuple[int, int]) -> None:
    vb = panel.map_plot.vb
    data = vb.sceneBoundingRect()
    labels = drawn_labels(panel.padding_axis)
    assert panel.padding_axis.isVisible() and [text for _, text in labels] == ["padding"]
    rect = labels[0][0]
    assert rect.bottom() <= data.top() + 1  # above the heatmap: it covers no unit's row
    assert rect.height() >= 8  # legible text, not a squashed one
    start, stop = (vb.mapViewToScene(pg.Point(x, 0)).x() for x in (span[0] - 0.5, span[1] - 0.5))
    assert rect.left() >= data.left() - 1 and rect.right() <= data.right() + 1  # not cut off
    assert rect.right() > start and rect.left() < stop  # at the shaded steps
    if rect.width() < stop - start:
        assert start - 1 <= rect.left() and rect.right() <= stop + 1


def test_hidden_panel_names_padding_above_the_heatmap_in_the_window_and_on_a_slide(qtbot, gru_padding_run):
    import dataclasses

    from app.export.figure import Figure, staged
    from app.panels.analysis import false_runs

    panel = fed(qtbot, "hidden", gru_padding_run)
    qtbot.waitUntil(lambda: panel.padding_axis.geometry().height() > 0)  # laid out with room for it
    (span,) = false_runs(panel.probe.valid)
    assert_padding_named_above_the_shading(panel, span)
    with staged(panel, Figure(), ("Hidden state", "")):  # a 1920x1080 slide
        assert_padding_named_above_the_shading(panel, span)
    # one padded step at the right edge of a narrow panel: the label, wider than the step,
    # moves inside the plot instead of being cut off (pyqtgraph would drop it)
    valid = np.ones(panel.probe.T, dtype=bool)
    valid[-1] = False
    panel.update_record(dataclasses.replace(panel.probe, valid=valid))
    panel.refresh()
    panel.resize(360, 600)
    qtbot.waitUntil(lambda: panel.map_plot.vb.width() < 300)
    assert_padding_named_above_the_shading(panel, (panel.probe.T - 1, panel.probe.T))
    panel.update_record(dataclasses.replace(panel.probe, valid=np.ones(panel.probe.T, dtype=bool)))
    panel.refresh()
    assert not panel.padding_axis.isVisible()  # no padding, no label (and no room kept for one)


def test_spectral_radius_over_100k_steps_draws_about_two_points_a_pixel_and_keeps_them_all(qtbot, lstm_run):
    import dataclasses

    from core.records import SpectrumRecord

    panel = fed(qtbot, "spectrum", lstm_run)
    record = next(r for r in (getattr(r, "spectrum", r) for r in lstm_run[1]) if isinstance(r, SpectrumRecord))
    panel.reset(lstm_run[0])
    radius = 1 + 0.1 * np.sin(np.arange(100_000) / 500.0)
    radius[12_345] = 3.0  # a spike must survive the reduction
    for step, value in enumerate(radius):
        panel.update_record(dataclasses.replace(record, step=step, radius=(value,)))
    assert panel.refresh()
    panel.grab()  # paint: the view takes the new range, the curve what it will draw
    curve = panel.radius_curves[0]
    x, y = curve.curve.getData()  # the points the painted line goes through
    assert 100 < len(x) <= 2.1 * panel.radius_plot.vb.width() + 4
    assert curve.xData.size == 100_000 and len(panel.export_data()["radius_l0"]) == 100_000
    assert np.nanmax(y) == 3.0 and np.nanmin(y) == radius.min()


def test_a_legend_is_drawn_only_when_it_has_entries(qtbot, lstm_run, rnn_run):
    one = fed(qtbot, "spectrum", lstm_run)
    assert len(one.radius_curves) == 1 and not one.radius_plot.legend.isVisible()  # one layer: no names
    assert one.sv_plot.legend.isVisible()  # W_hh's gate blocks
    two = fed(qtbot, "spectrum", rnn_run)
    assert two.radius_plot.legend.isVisible() and len(two.radius_plot.legend.items) == 2
    two.reset(lstm_run[0])
    assert not two.radius_plot.legend.isVisible()


def test_legends_live_in_their_own_module_and_the_panels_use_them(qtbot, lstm_run):
    from app.panels import legends, plots

    for name in ("Legend", "add_legend", "RowLegend", "legend_row"):
        assert getattr(legends, name).__module__ == "app.panels.legends"
        assert not hasattr(plots, name)  # one home for legends, not a second copy in plots
    spectrum = fed(qtbot, "spectrum", lstm_run)
    assert isinstance(spectrum.sv_plot.legend, legends.Legend) and spectrum.sv_plot.legend.isVisible()


def test_axes_live_in_their_own_module_and_the_panels_use_them(qtbot, lstm_run):
    from app.panels import axes, plots

    for name in ("TimeAxis", "LabelAxis", "LogAxis", "StepAxis", "SpanLabelAxis"):
        assert getattr(axes, name).__module__ == "app.panels.axes"
        assert not hasattr(plots, name)  # one home for axes, not a second copy in plots
    gradients = fed(qtbot, "gradients", lstm_run)
    assert isinstance(gradients.norm_plot.getAxis("left"), axes.LogAxis)
    assert isinstance(gradients.history_plot.getAxis("bottom"), axes.TimeAxis)


def _drawn_color(label) -> str:
    """The colour a legend's name is drawn in (its text's first character's)."""
    from PySide6.QtGui import QTextCursor

    cursor = QTextCursor(label.item.document())
    cursor.setPosition(1)
    return cursor.charFormat().foreground().color().name().lower()


@pytest.mark.parametrize("theme", ["dark", "slide"])
def test_legends_take_the_theme_colour_of_their_text(qtbot, lstm_run, theme):
    from app.theme import get_theme

    for name, plot in (("hidden", "trace_plot"), ("spectrum", "sv_plot")):
        panel = fed(qtbot, name, lstm_run)  # light theme
        legend = getattr(panel, plot).legend
        assert legend.items, name
        panel.apply_theme(get_theme(theme))
        assert _drawn_color(legend.items[0][1]) == get_theme(theme).foreground.lower()


@pytest.mark.parametrize("name", MINE)
def test_the_text_in_every_panels_plots_follows_the_theme(qtbot, name, lstm_run):
    """Failed before (issue 14, a real window): the Gates panel's row names (i, f, g, o, c)
    kept the light theme's dark grey after View > Theme > Dark, dark on dark (1.2:1)."""
    from app.theme import DARK, LIGHT
    from tests.app.invariants import contrast_problems

    panel = fed(qtbot, name, lstm_run)  # light
    assert contrast_problems(panel) == []
    panel.apply_theme(DARK)
    panel.refresh(force=True)
    assert contrast_problems(panel) == []
    panel.apply_theme(LIGHT)
    assert contrast_problems(panel) == []


@pytest.mark.parametrize("size", [(380, 300), (900, 600)])
def test_legends_sit_above_their_plots_and_cover_no_data(qtbot, lstm_run, size):
    """The Spectrum legend covered most of its plot at 1280x720; a legend above the plot's
    data area covers nothing at any size, its entries in as many rows as the width needs."""
    from tests.app.invariants import legend_problems

    panel = fed_panel(qtbot, "spectrum", lstm_run, size=size, show=True)
    qtbot.waitUntil(lambda: panel.sv_plot.vb.width() > 0)
    legend = panel.sv_plot.legend
    assert [label.text for _, label in legend.items] == ["i input", "f forget", "g cell", "o output"]
    box, data = legend.sceneBoundingRect(), panel.sv_plot.vb.sceneBoundingRect()
    assert box.bottom() <= data.top() + 1 and legend_problems(panel) == []
    assert box.width() <= panel.sv_plot.width() + 1  # wrapped into rows rather than wider than the plot


def _tick_strings(axis) -> list[str]:
    """The tick labels ``axis`` draws now."""
    return [text for _, text in drawn_labels(axis)]


def test_tick_labels_keep_their_values_through_a_theme_change(qtbot, lstm_run):
    from app.theme import DARK

    panel = fed(qtbot, "spectrum", lstm_run)  # a few steps: spectral radii between 0.6 and 0.7
    axis = panel.radius_plot.getAxis("left")
    qtbot.waitUntil(lambda: axis.range[0] > 0)  # the view has taken the data's range
    panel.apply_theme(DARK)  # as every export does, to the slide theme and back
    lo, hi = axis.range
    assert 0 < lo < hi < 1
    values = [float(text) for text in _tick_strings(axis)]
    assert values and all(lo <= v <= hi for v in values), (values, lo, hi)  # not 645 for 0.645


@pytest.mark.parametrize(("lo", "hi", "height"), [(0.07, 1.5, 160), (0.07, 1.5, 600), (1e-11, 0.3, 150),
                                                  (0.004, 6.0, 110), (0.3, 0.9, 300), (0.55, 1.15, 90)])
def test_log_axis_labels_stay_apart_and_keep_the_powers_of_ten(qtbot, lo, hi, height):

    from app.panels.axes import LogAxis
    from app.panels.plots import new_plot
    from app.theme import LIGHT

    view = pg.GraphicsLayoutWidget()
    qtbot.addWidget(view)
    view.resize(300, height)
    plot = new_plot(view.ci, LIGHT, y="loss", left_axis=LogAxis("left"))
    plot.setLogMode(y=True)
    plot.plot([0.0, 1.0], [lo, hi])
    plot.setYRange(np.log10(lo), np.log10(hi), padding=0)
    view.show()
    axis = plot.getAxis("left")

    def labels() -> list:
        return sorted(((rect, text) for rect, text in drawn_labels(axis) if text), key=lambda item: item[0].top())

    qtbot.waitUntil(lambda: abs(axis.range[1] - np.log10(hi)) < 1e-6 and len(labels()) >= 2)
    drawn = labels()
    for (a, first), (b, second) in zip(drawn, drawn[1:]):
        assert not a.intersects(b), (first, second)
    texts = [text for _, text in drawn]
    decades = [pg.AxisItem.logTickStrings(axis, [float(d)], 1.0, 1.0)[0]
               for d in range(int(np.ceil(np.log10(lo))), int(np.floor(np.log10(hi))) + 1)]
    if len(decades) <= 3:  # a few powers of ten in range: every one is labelled
        assert set(decades) <= set(texts), (decades, texts)
    else:  # many: only powers of ten, as many as fit
        assert set(texts) <= set(decades) and len(texts) >= 3, (decades, texts)
    assert len(texts) >= 2  # within a decade too


def test_training_curves_are_long_curves_drawn_at_about_two_points_a_pixel(qtbot, lstm_run, monkeypatch):
    from app.panels import plots, training

    made = []  # one mechanism for every curve over training steps: plots.long_curve

    def spy(plot, **kwargs):
        made.append(plots.long_curve(plot, **kwargs))
        return made[-1]

    monkeypatch.setattr(training, "long_curve", spy)
    panel = fed(qtbot, "training", lstm_run)
    assert made == [panel.loss_curve, panel.grad_curve, panel.median_curve]
    panel.clear()
    steps = 100_000
    loss = 0.2 + 0.1 * np.cos(np.arange(steps) / 700.0)
    loss[54_321] = 5.0  # a spike must survive the reduction
    for step, value in enumerate(loss):
        panel.series.append(step + 1, value, value, value, 0.0, 0.0, value)
    assert panel.refresh(force=True)
    panel.grab()  # paint: the view takes the new range, the curves what they will draw
    for curve, plot in ((panel.loss_curve, panel.loss_plot), (panel.grad_curve, panel.grad_plot)):
        x, y = curve.curve.getData()  # the points the painted line goes through
        assert 100 < len(x) <= 2.1 * plot.vb.width() + 4, len(x)
        assert curve.xData.size == steps and np.nanmax(y) == pytest.approx(np.log10(5.0))


def test_masking_off_is_a_view_of_one_run_and_a_new_run_starts_masked(qtbot, gru_padding_run, lstm_run):
    """Leaving padding-gru with "Masking off" checked left it checked (and the header saying
    "masking off") on the next preset, whose experiment says masking is on."""
    panel = fed(qtbot, "hidden", gru_padding_run)
    panel.unmasked.setChecked(True)
    panel.refresh(force=True)
    assert "masking off" in panel.note.text()
    for run in (lstm_run, gru_padding_run):
        info, records = run
        panel.reset(info)
        for record in records:
            panel.update_record(record)
        panel.refresh()
        assert not panel.unmasked.isChecked()
        assert "masking off" not in panel.note.text()


@pytest.mark.parametrize("name", panel_names())
def test_every_panel_gives_back_its_histories(qtbot, name, lstm_run):
    """The contract a session relies on: what ``histories()`` returns, a fresh panel for the
    same run takes back whole with ``restore_histories``; entries after the run's step are
    left out (a session saved while training ran on)."""
    import dataclasses

    info, records = lstm_run
    panel = fed(qtbot, name, lstm_run)
    saved = panel.histories()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in saved.values())
    reopened = dataclasses.replace(info, step=max(r.step for r in records))  # as a session opens
    fresh = fed(qtbot, name, (reopened, []))
    fresh.restore_histories(saved)
    restored = fresh.histories()
    assert sorted(restored) == sorted(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    if name in ("gradients", "spectrum"):
        assert saved and len(next(iter(saved.values()))) > 1  # these keep a history over training
        earlier = fed(qtbot, name, (dataclasses.replace(info, step=2), []))
        earlier.restore_histories(saved)
        steps = earlier.histories()["steps" if name == "gradients" else "step"]
        assert len(steps) and steps.max() <= 2


def test_the_held_out_plot_takes_a_theme_chosen_while_it_is_out_of_the_layout(qtbot, lstm_run):
    """Failed before (a real window at 1920x1080): a translation run's held-out plot, shown
    once the panel grew, kept the light theme's text, dark grey on the dark background,
    because restyling reached only the plots in the panel's layout."""
    from PySide6.QtGui import QColor

    from app.theme import DARK

    panel = fed(qtbot, "training", lstm_run)
    assert not panel._eval_shown  # no held-out scores: out of the layout
    panel.apply_theme(DARK)
    legend = panel.eval_plot.legend
    assert legend.items and all(_drawn_color(label) == DARK.foreground.lower() for _, label in legend.items)
    axis = panel.eval_plot.getAxis("left")
    assert axis.textPen().color() == QColor(DARK.foreground)
