"""Figure and data export: exact pixel sizes, SVG with its text, data that round-trips, Export All."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QContextMenuEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from app.export.batch import export_all, frame_count, parse_formats, parse_panels, save_frames
from app.export.data import choose_format, data_kind, write_data
from app.export.figure import (
    SIZE_PRESETS,
    Figure,
    at_dpi,
    caption_lines,
    parse_size,
    save_png,
    save_svg,
    staged,
)
from app.panels import panel_names
from app.theme import LIGHT, get_theme
from tests.app.conftest import fed as fed_panel
from tests.app.drawn import drawn_labels

SVG = "{http://www.w3.org/2000/svg}"
LOSS_BGR = (0xB2, 0x72, 0x00)  # the loss colour, #0072B2, as stored in an ARGB32 image


def fed(qtbot, run, name: str):
    return fed_panel(qtbot, name, run, size=(900, 500))


@pytest.fixture
def training(qtbot, lstm_run):
    return fed(qtbot, lstm_run, "training")


@pytest.fixture
def hidden(qtbot, lstm_run):
    return fed(qtbot, lstm_run, "hidden")


@pytest.mark.parametrize("preset", list(SIZE_PRESETS))
def test_png_has_exactly_the_preset_pixel_size(training, tmp_path, preset):
    size = SIZE_PRESETS[preset]
    path = save_png(training, tmp_path / "training.png", Figure(size=size))
    assert QImage(str(path)).size().toTuple() == size


def test_png_at_a_custom_size_and_at_a_dpi(training, tmp_path):
    path = save_png(training, tmp_path / "custom.png", Figure(size=(1001, 333), theme="dark"))
    assert QImage(str(path)).size().toTuple() == (1001, 333)
    figure = at_dpi(training, 192)
    assert figure.size == (1800, 1000) and figure.device_scale == 2.0
    image = QImage(str(save_png(training, tmp_path / "dpi.png", figure)))
    assert image.size().toTuple() == (1800, 1000)
    assert round(image.dotsPerMeterX() * 0.0254) == 192


def test_slide_png_has_thick_lines_and_leaves_the_panel_as_it_was(training, tmp_path):
    widths = [training.loss_curve.opts["pen"].widthF(), training.baseline.pen.widthF()]
    options_shown = not training.log_loss.isHidden()
    path = save_png(training, tmp_path / "slide.png", Figure())
    image = QImage(str(path)).convertToFormat(QImage.Format_ARGB32)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.width(), 4)[..., :3]
    loss = np.all(np.abs(pixels.astype(int) - LOSS_BGR) < 30, axis=-1)
    runs = [_longest_run(loss[:, x]) for x in range(800, 1400, 50)]
    assert max(runs) >= 5  # 2 px on screen -> 2 x 2 (scale) x 1.5 (slide lines) = 6 px
    assert [training.loss_curve.opts["pen"].widthF(), training.baseline.pen.widthF()] == widths
    assert not training.log_loss.isHidden() == options_shown
    assert training.theme is LIGHT and training.size().toTuple() == (900, 500)


def test_a_size_too_small_for_the_panel_is_refused_and_nothing_written(training, tmp_path):
    training.plot_widgets()[0].setMinimumSize(1500, 100)
    with pytest.raises(ValueError, match="choose a larger size or a smaller scale"):
        save_png(training, tmp_path / "small.png", Figure(size=(640, 360)))
    assert not (tmp_path / "small.png").exists() and training.theme is LIGHT
    assert training.parentWidget() is None and not training.log_loss.isHidden()


def _longest_run(column: np.ndarray) -> int:
    best = run = 0
    for v in column:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def test_svg_parses_and_keeps_axis_labels_legend_and_caption(training, tmp_path):
    path = save_svg(training, tmp_path / "training.svg", Figure(size=(1280, 720)), ("Training", "LSTM · seed 0"))
    root = ET.parse(path).getroot()
    assert root.get("viewBox") == "0 0 1280 720"
    texts = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}
    assert {"loss", "step", "Training", "LSTM · seed 0"} <= texts
    assert any(r.get("width") == "1280" for r in root.iter(f"{SVG}rect"))  # an explicit background


def test_caption_names_the_panel_and_the_key_settings(training):
    title, details = caption_lines(training, step=6)
    assert title == "Training"
    for part in ("LSTM", "8 units", "T 12", "lr 0.01", "seed 0", "step 6"):
        assert part in details


def test_training_curves_round_trip_through_csv(training, tmp_path):
    data = training.export_data()
    assert data_kind(data) == "table" and len(data["loss"]) == 6
    path = write_data(data, tmp_path / "training.csv")
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == list(data)
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_array_equal(table, np.column_stack(list(data.values())))


def test_hidden_traces_round_trip_through_npz(hidden, tmp_path):
    data = hidden.export_data()
    assert choose_format(data, ("csv", "npz", "json")) == "npz"
    with np.load(write_data(data, tmp_path / "hidden.npz"), allow_pickle=False) as saved:
        assert set(saved.files) == set(data)
        for name, array in data.items():
            np.testing.assert_array_equal(saved[name], array)


def test_structures_go_to_json_with_non_finite_numbers_as_null(tmp_path):
    tree = {"tokens": ["<s>", "a"], "beams": [{"score": -0.5, "children": []}],
            "attention": np.array([[0.25, 0.75], [np.nan, 1.0]])}
    assert choose_format(tree, ("csv", "npz", "json")) == "json"
    saved = json.loads(write_data(tree, tmp_path / "decoding.json").read_text())
    assert saved["attention"] == [[0.25, 0.75], [None, 1.0]] and saved["beams"][0]["score"] == -0.5


def test_the_data_format_is_the_best_one_asked_for():
    table = {"step": np.arange(3.0), "loss": np.ones(3)}
    arrays = {"h": np.zeros((3, 4)), "t": np.arange(3)}
    assert choose_format(table, ("npz", "json")) == "npz"
    assert choose_format(arrays, ("csv",)) is None
    assert choose_format(arrays, ("csv", "json")) == "json"
    assert choose_format(table, ("csv", "npz", "json"), preferred="json") == "json"
    with pytest.raises(ValueError, match="not a table"):
        write_data(arrays, "h.csv")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_size("0x10"), "from 320x240 to 7680x4320; got 0x10"),
    (lambda: parse_size("big"), "WIDTHxHEIGHT .* slide, 4k, square; got 'big'"),
    (lambda: parse_formats("png,gif"), "unknown format 'gif'; choose from png, svg, csv, npz, json"),
    (lambda: parse_panels("training,nope", panel_names()), "unknown panel 'nope'; choose from training"),
    (lambda: get_theme("neon"), "theme must be one of light, dark, slide; got 'neon'"),
    (lambda: Figure(scale=100).validated(), "scale must be from 0.25 to 16; got 100"),
])
def test_bad_values_are_refused_naming_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_frames_step_through_the_probe(hidden, tmp_path, lstm_run):
    hidden.set_time_cursor(3)
    count = frame_count(hidden)
    assert count == lstm_run[1][-1].probe.T
    paths = save_frames(hidden, tmp_path / "frames", Figure(size=(640, 360)))
    assert [p.name for p in paths] == [f"hidden_{t:03d}.png" for t in range(count)]
    assert QImage(str(paths[-1])).size().toTuple() == (640, 360)
    assert hidden.time_cursor == 3


def test_copy_puts_the_figure_on_the_clipboard(training):
    from app.export.figure import copy_image

    copy_image(training, Figure(size=(800, 450)))
    assert QGuiApplication.clipboard().image().size().toTuple() == (800, 450)


def test_export_all_from_the_window_writes_visible_panels_and_experiment_json(qtbot, lstm_run, tmp_path):
    from app.window.offscreen import build_window

    window = build_window(*lstm_run)
    qtbot.addWidget(window)
    window.resize(1600, 900)  # its default: no new arrangement of the docks follows
    window.show()
    qtbot.waitExposed(window)
    visible = [p.name for p in window.visible_panels()]
    window.exports.figure = Figure(size=(640, 360))
    written = window.exports.export_all(tmp_path)
    names = {p.name for p in written}
    assert {"training.png", "training.svg", "training.csv", "hidden.npz", "experiment.json"} <= names
    assert names >= {f"{n}.png" for n in visible}
    record = json.loads((tmp_path / "experiment.json").read_text())
    assert record["config"] == lstm_run[0].experiment.to_dict() and record["seed"] == 0 and record["step"] == 6
    assert {"python", "torch", "app", "numpy", "pyside6", "pyqtgraph"} <= set(record["versions"])
    assert [p.name for p in window.visible_panels()] == visible  # every panel went back to its dock
    assert all(window.docks[n].widget() is window.panels[n] for n in window.panels)
    actions = [a.text() for a in window.panels["hidden"].actions() if a.isVisible()]  # what the menu shows
    assert actions == ["Export Figure…", "Export Animation…", "Export Data…", "Copy Figure"]  # (What if's only over a unit)


def test_right_click_on_a_plot_reaches_the_panel_menu(qtbot, lstm_run):
    from app.window.offscreen import build_window

    window = build_window(*lstm_run)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    panel = window.panels["training"]
    assert panel.contextMenuPolicy() == Qt.ActionsContextMenu
    reached = []

    class Catch(QObject):  # stands in for the menu (QMenu.exec would block the test)
        def eventFilter(self, watched, event):  # noqa: N802
            if event.type() == QEvent.ContextMenu:
                reached.append(watched)
                return True
            return False

    catch = Catch()
    panel.installEventFilter(catch)
    viewport = panel.plot_widgets()[0].viewport()
    pos = viewport.rect().center()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Mouse, pos, viewport.mapToGlobal(pos)))
    assert reached == [panel]


def test_export_all_refuses_bad_formats_before_writing(training, tmp_path, lstm_run):
    with pytest.raises(ValueError, match="unknown format 'tiff'"):
        export_all([training], tmp_path / "out", lstm_run[0], 6, formats=("png", "tiff"))
    assert not (tmp_path / "out").exists()


def test_the_export_dialog_writes_the_chosen_format_and_size(qtbot, training, hidden, tmp_path):
    from app.export.dialog import ExportDialog

    dialog = ExportDialog({"training": training, "hidden": hidden}, "hidden", Figure())
    qtbot.addWidget(dialog)
    assert dialog.current_panel is hidden and dialog.figure() == Figure()
    dialog.size.setCurrentIndex(dialog.size.findData("square"))
    dialog.kind.setCurrentIndex(dialog.kind.findData("svg"))
    path = dialog.export_to(tmp_path / dialog.suggested_name())
    assert path.name == "hidden.svg" and ET.parse(path).getroot().get("viewBox") == "0 0 1080 1080"
    dialog.kind.setCurrentIndex(dialog.kind.findData("data"))
    assert dialog.suggested_name() == "hidden.npz"
    dialog.size.setCurrentIndex(dialog.size.findData("dpi"))
    dialog.dpi.setValue(144)
    assert dialog.figure().size == (1350, 750)


def _empty_legends(panel) -> list:
    """Legends that are drawn (visible) but have no entries: a stray box on the figure."""
    return [item for view in panel.plot_widgets() for item in view.scene().items()
            if isinstance(item, pg.LegendItem) and item.isVisible() and not item.items]


@pytest.mark.parametrize("name", panel_names())
def test_no_panel_draws_an_empty_legend_on_screen_or_on_a_slide(qtbot, lstm_run, name):
    panel = fed(qtbot, lstm_run, name)  # one layer: gradients and spectrum name no layers
    panel.show()
    assert _empty_legends(panel) == []
    with staged(panel, Figure(), caption_lines(panel)):
        assert _empty_legends(panel) == []


def test_a_legend_with_entries_is_still_drawn(qtbot, rnn_run):
    panel = fed(qtbot, rnn_run, "gradients")  # two layers: one entry each
    with staged(panel, Figure(), caption_lines(panel)):
        legend = panel.norm_plot.legend
        assert legend.isVisible() and [label.text for _, label in legend.items] == ["layer 0", "layer 1", "full BPTT"]


def _scene_x(plot, t: float) -> float:
    return plot.vb.mapViewToScene(QPointF(t, 0)).x()


def _assert_t_lines_up(top, bottom, T: int) -> None:
    for t in (0, T - 1):
        assert abs(_scene_x(top, t) - _scene_x(bottom, t)) <= 1.5, t
        for plot in (top, bottom):  # and both plots show it (linking alone may cut the image)
            box = plot.vb.sceneBoundingRect()
            assert box.left() <= _scene_x(plot, t) <= box.right(), (t, plot is top)
    for side in ("left", "right"):
        assert abs(getattr(top.vb.sceneBoundingRect(), side)() - getattr(bottom.vb.sceneBoundingRect(), side)()) <= 1.5


@pytest.mark.parametrize(("name", "top", "bottom"), [("gradients", "norm_plot", "history_plot"),
                                                     ("hidden", "map_plot", "trace_plot")])
def test_time_steps_line_up_between_a_heatmap_and_the_plot_beside_it(qtbot, lstm_run, name, top, bottom):
    panel = fed(qtbot, lstm_run, name)
    top, bottom = getattr(panel, top), getattr(panel, bottom)
    T = lstm_run[0].experiment.seq_len
    panel.show()
    qtbot.waitUntil(lambda: _assert_t_lines_up(top, bottom, T))  # in the window, once laid out
    with staged(panel, Figure(), caption_lines(panel)):  # on a 1920x1080 slide
        _assert_t_lines_up(top, bottom, T)


def _tick_labels(axis) -> dict[str, QRectF]:
    """The tick labels ``axis`` draws, with their scene rectangles."""
    return {text: rect for rect, text in drawn_labels(axis)}


def _assert_t0_labelled(plot, text: str = "0") -> None:
    labels = _tick_labels(plot.getAxis("bottom"))
    assert text in labels, sorted(labels)
    assert abs(labels[text].center().x() - _scene_x(plot, 0)) <= 1.5  # under its tick
    assert plot.scene().sceneRect().contains(labels[text])  # and on the figure


def test_the_gradient_history_labels_t_0_in_the_window_and_on_a_slide(qtbot, lstm_run):
    from core.records import GradientRecord

    panel = fed(qtbot, lstm_run, "gradients")
    T = 100  # the vanishing-rnn slide's probe: a cell is narrower than the label "0"
    norms = 0.8 ** np.arange(T)[::-1]
    for step in range(1, 40):
        panel.update_record(GradientRecord(step, (norms,), norms, 0.8, 1.01, None))
    panel.show()
    panel.refresh(force=True)
    top, bottom = panel.norm_plot, panel.history_plot
    qtbot.waitUntil(lambda: _assert_t_lines_up(top, bottom, T))
    _assert_t0_labelled(bottom)
    with staged(panel, Figure(), caption_lines(panel)):  # on a 1920x1080 slide
        _assert_t_lines_up(top, bottom, T)
        _assert_t0_labelled(bottom)


def _labelled_left_axes(panel) -> list:
    return [item for view in panel.plot_widgets() for item in view.scene().items()
            if isinstance(item, pg.AxisItem) and item.orientation == "left" and item.isVisible()
            and item.label.isVisible() and item.labelText]


def _assert_label_clear_of_tick_labels(axis) -> None:
    """The (rotated) label of a left axis ends 2 px or more before the column of its tick
    labels begins, whatever their heights: a tick label may sit beside the label's middle."""
    ticks = _tick_labels(axis)
    margin = axis.label.document().documentMargin()
    label = axis.label.mapRectToScene(axis.label.boundingRect().adjusted(margin, margin, -margin, -margin))  # its text
    column = min((rect.left() for rect in ticks.values()), default=label.right() + 2)
    assert label.right() + 2 <= column, (axis.labelText, label, sorted(ticks))


def _assert_labels_clear_of_tick_labels(panel) -> None:
    for axis in _labelled_left_axes(panel):
        _assert_label_clear_of_tick_labels(axis)


def test_a_long_tick_label_leaves_room_for_the_axis_label_and_t_still_lines_up(qtbot, lstm_run):
    from core.records import GradientRecord

    panel = fed(qtbot, lstm_run, "gradients")
    norms = np.geomspace(3e-5, 0.5, 100)  # a tick labelled "0.0001", the widest a log axis has
    panel.update_record(GradientRecord(1, (norms,), norms, 0.8, 1.01, None))
    top, bottom = panel.norm_plot, panel.history_plot

    def fits() -> None:
        assert "0.0001" in _tick_labels(top.getAxis("left"))  # the new range is drawn
        _assert_t_lines_up(top, bottom, 100)
        for axis in (top.getAxis("left"), bottom.getAxis("left")):
            _assert_label_clear_of_tick_labels(axis)

    with staged(panel, Figure(), caption_lines(panel)):  # a slide of a panel never shown before
        fits()
    panel.show()
    panel.refresh(force=True)
    qtbot.waitUntil(fits)  # in the window, once laid out


@pytest.mark.parametrize("name", panel_names())
def test_no_axis_label_runs_into_its_tick_labels_on_screen_or_on_a_slide(qtbot, lstm_run, name):
    panel = fed(qtbot, lstm_run, name)
    panel.show()
    qtbot.waitUntil(lambda: _assert_labels_clear_of_tick_labels(panel))  # once laid out
    with staged(panel, Figure(), caption_lines(panel)):
        _assert_labels_clear_of_tick_labels(panel)


@pytest.mark.parametrize("name", panel_names())
def test_axis_and_colour_bar_labels_write_subscripts_as_subscripts(qtbot, lstm_run, name):
    import re

    panel = fed(qtbot, lstm_run, name)
    labels = [item.labelText for view in panel.plot_widgets() for item in view.scene().items()
              if isinstance(item, pg.AxisItem) and item.labelText]  # colour bars' axes included
    assert labels
    assert [text for text in labels if re.search(r"_\w|_\{", text)] == []  # "h_t" is h<sub>t</sub>


def _long_probe(probe, T: int = 100, marked: tuple[int, ...] = (7, 60)):
    """``probe`` stretched to ``T`` time steps (the vanishing-rnn slide's), labelled with
    values as the adding problem's, those at ``marked`` marked."""
    import dataclasses

    def stretch(a):
        return np.resize(a, (T, *a.shape[1:]))

    labels = tuple(("*" if t in marked else "") + f"{(37 * t) % 100 / 100:.2f}" for t in range(T))
    return dataclasses.replace(
        probe, labels=labels, inputs=stretch(probe.inputs), valid=np.ones(T, dtype=bool),
        hidden=tuple(stretch(h) for h in probe.hidden), cell=tuple(stretch(c) for c in probe.cell or ()) or None,
        gates=tuple({k: stretch(v) for k, v in g.items()} for g in probe.gates), unmasked_hidden=None)


def test_the_hidden_state_and_the_gates_label_t_0_in_the_window_and_on_a_slide(qtbot, lstm_run):
    from core.records import ProbeRecord

    probe = _long_probe(next(r for r in reversed(lstm_run[1]) if isinstance(r, ProbeRecord)))
    hidden, gates = fed(qtbot, lstm_run, "hidden"), fed(qtbot, lstm_run, "gates")
    for panel in (hidden, gates):
        panel.update_record(probe)
        panel.show()
        panel.refresh(force=True)
    top, bottom = hidden.map_plot, hidden.trace_plot
    last_gate = gates.rows[-1].plot  # the one row that shows the probe's labels

    def labelled() -> None:
        _assert_t_lines_up(top, bottom, probe.T)
        _assert_t0_labelled(top, probe.labels[0])  # the probe's input at t = 0
        _assert_t0_labelled(bottom)
        _assert_t0_labelled(last_gate, probe.labels[0])

    qtbot.waitUntil(labelled)  # in the window, once laid out
    with staged(hidden, Figure(), caption_lines(hidden)), staged(gates, Figure(), caption_lines(gates)):
        labelled()  # on 1920x1080 slides


def _assert_labels_apart(axis) -> None:
    drawn = sorted(((rect, text) for rect, text in drawn_labels(axis) if text), key=lambda item: item[0].left())
    assert len(drawn) >= 3
    for (a, first), (b, second) in zip(drawn, drawn[1:]):
        assert a.right() + 2 <= b.left(), (first, second, a, b)


@pytest.mark.parametrize("width", [700, 900, 1100, 1300])
def test_marked_inputs_keep_clear_of_the_other_probe_labels(qtbot, lstm_run, width):
    from core.records import ProbeRecord

    # the adding problem's probe at T = 50: its second operand near the end
    probe = _long_probe(next(r for r in reversed(lstm_run[1]) if isinstance(r, ProbeRecord)), 50, (9, 48))
    hidden, gates = fed(qtbot, lstm_run, "hidden"), fed(qtbot, lstm_run, "gates")
    for panel in (hidden, gates):
        panel.resize(width, 500)
        panel.update_record(probe)
        panel.show()
        panel.refresh(force=True)
    axes = (hidden.map_plot.getAxis("bottom"), gates.rows[-1].plot.getAxis("bottom"))
    qtbot.waitUntil(lambda: [_assert_labels_apart(axis) for axis in axes] and None)
    with staged(hidden, Figure(), caption_lines(hidden)), staged(gates, Figure(), caption_lines(gates)):
        for axis in axes:
            _assert_labels_apart(axis)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_exporting_leaves_the_live_window_exactly_as_it_was(qtbot, lstm_run, tmp_path, theme):
    """After Export Figure / Export All, legends on screen had gained the slide's frames and
    headers had turned grey: every style an export changes (label colours and style sheets,
    legend frames and fills, axis pens, plot backgrounds) must be as before, in every panel.
    (Compared as styles, not pixels: an axis re-measured after a restyle may move a few
    pixels, which nobody sees, while a legend's frame is what the user saw.)"""
    from app.window.offscreen import build_window

    window = build_window(*lstm_run, theme=theme)
    qtbot.addWidget(window)
    window.resize(1600, 900)
    window.show()
    qtbot.waitExposed(window)
    from PySide6.QtGui import QPalette

    window_color = QApplication.palette().color(QPalette.Window)  # the theme's, once its change event arrived
    qtbot.waitUntil(lambda: all(p.palette().color(QPalette.Window) == window_color for p in window.panels.values()))
    window.refresh_all()
    before = {p.name: _look(p) for p in window.panels.values()}
    assert any(look["legends"] for look in before.values())  # the check sees legends at all
    window.exports.figure = Figure(size=(800, 450))
    for panel in window.panels.values():
        save_png(panel, tmp_path / f"{panel.name}.png", Figure(size=(800, 450)))
    window.exports.export_all(tmp_path / "all", formats=("png", "svg"))
    window.refresh_all()
    for panel in window.panels.values():
        assert _look(panel) == before[panel.name], panel.name
        assert panel.parentWidget() is window.docks[panel.name], panel.name  # back in its dock


def _look(panel) -> dict:
    """Every style an export touches, as plain values."""
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QLabel

    def color(c) -> str:
        return c.color().name(QColor.HexArgb) if hasattr(c, "color") else QColor(c).name(QColor.HexArgb)

    from PySide6.QtGui import QColor

    labels = [(lbl.objectName(), lbl.text(), lbl.styleSheet(), lbl.palette().color(QPalette.WindowText).name())
              for lbl in panel.findChildren(QLabel)]
    legends, axes, views = [], [], []
    for view in panel.plot_widgets():
        views.append(view.backgroundBrush().color().name(QColor.HexArgb))
        for item in view.scene().items():
            if isinstance(item, pg.LegendItem):
                legends.append((color(item.opts["pen"]), color(item.opts["brush"]),
                                color(item.opts["labelTextColor"]) if item.opts.get("labelTextColor") else ""))
            elif isinstance(item, pg.AxisItem):
                axes.append((item.orientation, color(item.pen()), color(item.textPen())))
    return {"labels": labels, "legends": legends, "axes": axes, "views": views,
            "palette": panel.palette().color(QPalette.Window).name()}
