"""What if in the app: right-click edits, the counterfactual drawn beside the factual run,
the What if dock (on/off, remove, lesion, ranking) and captions."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from core.interventions import Intervention, parse_intervention
from core.records import AblationRecord, CounterfactualRecord
from tests.app.conftest import fed, tiny

FORGET = parse_intervention("gate=forget,units=2;5,t=4:,op=set,value=0")


@pytest.fixture(scope="module")
def what_if_run():
    """(info, records) of a tiny LSTM with a counterfactual (forget gate of units 2, 5 shut
    from t = 4) and an ablation record at the end."""
    from app.training.engine import make_trainer, run_info
    from app.window.offscreen import train_records

    trainer = make_trainer(tiny())
    records = train_records(trainer, 5)
    trainer.set_interventions([FORGET])
    records += [trainer.counterfactual(), *trainer.ablation()]
    return run_info(trainer), records


def counterfactual_of(run) -> CounterfactualRecord:
    return next(r for r in run[1] if isinstance(r, CounterfactualRecord))


def scene_pos(plot, t: float, unit: float):
    return plot.vb.mapViewToScene(QPointF(t, unit))


def test_hidden_shows_the_counterfactual_under_the_factual_run(qtbot, what_if_run):
    panel = fed(qtbot, "hidden", what_if_run, size=(900, 700), show=True)
    cf = counterfactual_of(what_if_run)
    assert panel.what_if_plot.isVisible() and panel.what_if_view.isVisible()
    np.testing.assert_array_equal(panel.heatmap.image.image, cf.factual.hidden[0].T)
    np.testing.assert_array_equal(panel.what_if_map.image.image, cf.counterfactual.hidden[0].T)
    unit = panel.units[0]
    x, y = panel.what_if_traces[0].getData()
    np.testing.assert_array_equal(y, cf.counterfactual.hidden[0][:, unit])
    assert "probe loss: factual" in panel.note.text()
    panel.what_if_view.setCurrentText("difference")
    np.testing.assert_allclose(panel.what_if_map.image.image, (cf.counterfactual.hidden[0] - cf.factual.hidden[0]).T)
    assert np.all(panel.what_if_map.image.image[:, :4] == 0)  # nothing changes before t = 4
    panel.on_counterfactual(None)
    panel.refresh()
    assert not panel.what_if_plot.isVisible() and not panel.what_if_traces[0].isVisible()


def test_right_click_on_a_hidden_unit_offers_zero_clamp_and_add_from_there(qtbot, what_if_run, monkeypatch):
    panel = fed(qtbot, "hidden", what_if_run, size=(900, 700), show=True)
    actions = panel.what_if
    assert not actions.zero.isVisible()
    panel._hovered(scene_pos(panel.map_plot, 7, 3))
    assert actions.zero.isVisible() and actions.zero.text() == "What if: zero h of unit 3 from t = 7"
    assert actions.zero in panel.actions()  # in the panel's right-click menu
    with qtbot.waitSignal(actions.requested) as got:
        actions.zero.trigger()
    assert got.args[0] == Intervention("hidden", 0, (3,), None, 7, None, "zero", 0.0)
    monkeypatch.setattr("app.panels.what_if.ask_value", lambda *a: 0.25)
    with qtbot.waitSignal(actions.requested) as got:
        actions.clamp.trigger()
    assert got.args[0] == Intervention("hidden", 0, (3,), None, 7, None, "set", 0.25)
    monkeypatch.setattr("app.panels.what_if.ask_value", lambda *a: None)  # cancelled: nothing asked
    with qtbot.assertNotEmitted(actions.requested):
        actions.add.trigger()
    panel._hovered(QPointF(-50, -50))
    assert not actions.zero.isVisible()


def test_gates_show_the_difference_and_outline_the_edit(qtbot, what_if_run, monkeypatch):
    panel = fed(qtbot, "gates", what_if_run, size=(900, 900), show=True)
    cf = counterfactual_of(what_if_run)
    forget = next(row for row in panel.rows if row.gate == "forget")
    assert panel.what_if_show.currentText() == "difference"
    expected = cf.counterfactual.gates[0]["forget"] - cf.factual.gates[0]["forget"]
    np.testing.assert_allclose(forget.heatmap.image.image, expected.T)
    assert forget.heatmap.levels == (-1.0, 1.0)
    xs, ys = forget.outlines.curve.getData()
    assert np.nanmin(xs) == 3.5 and np.nanmax(xs) == cf.factual.T - 0.5  # from t = 4 to the end
    assert sorted(set(np.round(ys[np.isfinite(ys)], 1))) == [1.5, 2.5, 4.5, 5.5]  # units 2 and 5
    panel.what_if_show.setCurrentText("factual")
    np.testing.assert_array_equal(forget.heatmap.image.image, cf.factual.gates[0]["forget"].T)
    assert forget.heatmap.levels == (0.0, 1.0)
    panel._hovered(scene_pos(forget.plot, 6, 1))
    with qtbot.waitSignal(panel.what_if.requested) as got:
        panel.what_if.zero.trigger()
    assert got.args[0] == Intervention("gate", 0, (1,), "forget", 6, None, "zero", 0.0)
    c_row = next(row for row in panel.rows if row.gate == "c")
    panel._hovered(scene_pos(c_row.plot, 2, 0))
    assert panel.what_if.target.target == "cell" and panel.what_if.target.gate is None


def test_the_cell_diagram_shows_either_run_and_edits_the_gate_under_the_pointer(qtbot, what_if_run):
    panel = fed(qtbot, "cell", what_if_run, size=(1400, 800), show=True)
    cf = counterfactual_of(what_if_run)
    panel.unit.setValue(2)
    panel.set_time_cursor(6)
    panel.refresh(force=True)
    boxes = panel.diagram.gate_boxes
    assert panel.run_choice.currentText() == "what if" and boxes["forget"].value == 0.0
    _, other = panel.other_run.getData()
    np.testing.assert_array_equal(other, cf.factual.gates[0]["input"][6])  # the factual run, marked
    panel.run_choice.setCurrentText("factual")
    assert boxes["forget"].value == pytest.approx(float(cf.factual.gates[0]["forget"][6, 2]), abs=0)
    center = panel.diagram.mapFromScene(boxes["output"].sceneBoundingRect().center())
    assert panel.diagram.key_at(center) == "output"
    panel.aim("output")
    with qtbot.waitSignal(panel.what_if.requested) as got:
        panel.what_if.zero.trigger()
    assert got.args[0] == Intervention("gate", 0, (2,), "output", 6, None, "zero", 0.0)
    panel.aim(None)
    assert not panel.what_if.zero.isVisible()


def test_the_window_applies_edits_through_the_training_process(qtbot, window):
    from core.records import StepRecord

    hidden, dock = window.panels["hidden"], window.interventions.widget
    hidden.what_if.requested.emit(FORGET)
    qtbot.waitUntil(lambda: hidden.counterfactual is not None, timeout=30_000)
    cf = hidden.counterfactual
    assert cf.interventions == (FORGET.text(),)
    assert np.all(cf.counterfactual.gates[0]["forget"][4:, [2, 5]] == 0)
    assert dock.list.count() == 1 and dock.list.item(0).checkState() == Qt.Checked
    assert "probe loss: factual" in dock.loss.text()
    assert window.panels["gates"].counterfactual is cf and window.panels["cell"].counterfactual is cf
    assert window.panels["hidden"].what_if_caption.startswith("what if: forget gate f of units 2;5")
    from app.export.figure import caption_lines

    assert "what if: forget gate f of units 2;5 (layer 0) set to 0 from t = 4" in caption_lines(hidden)[1]
    assert window.interventions.overlay.curve.isVisible()
    # a refused edit (no unit 8 in a layer of 8) changes nothing and says why
    hidden.what_if.requested.emit(parse_intervention("units=8,op=zero"))
    qtbot.waitUntil(lambda: "unit 8 is out of range" in window.status.currentMessage(), timeout=30_000)
    assert dock.list.count() == 1 and window.interventions.edits == (FORGET,)
    # training goes on: the counterfactual instrument follows the model
    window.step(3)
    qtbot.waitUntil(lambda: window.last_step is not None and window.last_step.step == 3, timeout=30_000)
    qtbot.waitUntil(lambda: hidden.counterfactual.step == 3, timeout=30_000)
    # the switch: off drops the counterfactual everywhere
    dock.list.item(0).setCheckState(Qt.Unchecked)
    qtbot.waitUntil(lambda: hidden.counterfactual is None, timeout=30_000)
    assert window.panels["gates"].counterfactual is None and hidden.what_if_caption == ""
    assert window.interventions.edits == (FORGET.__class__(**{**FORGET.__dict__, "enabled": False}),)
    assert not window.interventions.overlay.curve.isVisible()
    # a lesion: the edits apply while training too
    dock.list.item(0).setCheckState(Qt.Checked)
    qtbot.waitUntil(lambda: hidden.counterfactual is not None, timeout=30_000)
    dock.lesion.setChecked(True)
    qtbot.waitUntil(lambda: window.interventions.lesion, timeout=30_000)
    seen = []
    window.controller.records_ready.connect(lambda rs: seen.extend(
        r.counterfactual for r in rs if isinstance(r, StepRecord) and r.counterfactual is not None))
    window.step(1)
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    assert seen[-1].lesion
    dock.list.setCurrentRow(0)
    dock.remove.click()
    qtbot.waitUntil(lambda: dock.list.count() == 0, timeout=30_000)
    assert hidden.counterfactual is None and not window.interventions.lesion
    # two edits asked for before the first answer: both are kept
    second = parse_intervention("target=cell,units=1,t=2:,op=scale,value=2")
    hidden.what_if.requested.emit(FORGET)
    window.panels["gates"].what_if.requested.emit(second)
    qtbot.waitUntil(lambda: dock.list.count() == 2, timeout=30_000)
    qtbot.waitUntil(lambda: hidden.counterfactual is not None
                    and hidden.counterfactual.interventions == (FORGET.text(), second.text()), timeout=30_000)


def test_ranking_units_and_choosing_a_bar_selects_the_unit_everywhere(qtbot, window):
    dock = window.interventions.widget
    dock.rank.click()
    qtbot.waitUntil(lambda: dock.ablation is not None, timeout=30_000)
    record = dock.ablation
    assert isinstance(record, AblationRecord) and record.effects.shape == (8,)
    np.testing.assert_array_equal(dock.bars.opts["x"], np.arange(8))
    heights = dock.bars.opts["height"]
    np.testing.assert_array_equal(heights, record.effects)
    unit = int(record.order[0])
    window.interventions.dock.raise_()  # the chart is on screen and the bars' auto-range has run
    vb = dock.plot.vb
    qtbot.waitUntil(lambda: dock.chart.isVisible() and vb.viewRange()[0][0] <= 0 and vb.viewRange()[0][1] >= 7,
                    timeout=10_000)
    with qtbot.waitSignal(dock.unit_chosen) as got:
        qtbot.mouseClick(dock.chart.viewport(), Qt.LeftButton,
                         pos=dock.chart.mapFromScene(dock.plot.vb.mapViewToScene(QPointF(unit, 0))))
    assert got.args == [0, unit]
    assert window.panels["hidden"].units == [unit]
    assert window.panels["cell"].unit.value() == unit
    assert window.panels["gates"].shown_unit == unit
    assert dock.plot.titleLabel.text.endswith("(exact)")
    # first-order: the estimate replaces the bars, and the title says so
    dock.first_order.setChecked(True)
    dock.rank.click()
    qtbot.waitUntil(lambda: dock.ablation is not record, timeout=30_000)
    assert dock.ablation.method == "first-order" and "(first-order estimate)" in dock.plot.titleLabel.text
    np.testing.assert_array_equal(dock.bars.opts["height"], dock.ablation.effects)


def test_a_shot_or_export_shows_a_sessions_interventions(qtbot, what_if_run):
    from dataclasses import replace

    from app.window.offscreen import build_window

    info, records = what_if_run
    window = build_window(replace(info, interventions=(FORGET,)), records)
    qtbot.addWidget(window)
    dock = window.interventions.widget
    assert dock.list.count() == 1 and dock.list.item(0).text() == FORGET.describe()
    assert window.panels["hidden"].counterfactual is counterfactual_of(what_if_run)
    assert dock.ablation is not None and "probe loss" in dock.loss.text()
    assert all(p.what_if_caption.startswith("what if: ") for p in window.panels.values())
    window.close()
