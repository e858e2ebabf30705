"""Inside the cell: the diagram shows the probe's values for the chosen (layer, unit, t)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from app.panels.cell.equations import cell_values, levels_of
from app.panels.cell.panel import CellPanel
from app.theme import LIGHT, colormap
from core.names import GATES
from core.records import ProbeRecord, StepRecord
from tests.app.conftest import fed as fed_panel


def last_probe(records) -> ProbeRecord:
    return [r.probe for r in records if isinstance(r, StepRecord) and r.probe is not None][-1]


def fed(qtbot, run) -> CellPanel:
    return fed_panel(qtbot, "cell", run, size=(1400, 800))


def expected_fill(key: str, value: float):
    lo, hi = levels_of(key)
    cmap = LIGHT.sequential_map if lo == 0.0 else LIGHT.diverging_map
    return colormap(cmap).map(min(max((value - lo) / (hi - lo), 0.0), 1.0), mode="qcolor")


def assert_shows(panel: CellPanel, probe: ProbeRecord, layer: int, unit: int, t: int) -> None:
    boxes = panel.diagram.gate_boxes
    for gate, values in probe.gates[layer].items():
        assert boxes[gate].value == pytest.approx(float(values[t, unit]), abs=0)
        assert boxes[gate].fill.name() == expected_fill(gate, float(values[t, unit])).name()
        chip = panel.diagram.nodes[f"eq:{gate}"]
        assert chip.fill.name() == boxes[gate].fill.name()
    nodes = panel.diagram.nodes
    assert nodes["h"].value == float(probe.hidden[layer][t, unit])
    assert nodes["h_prev"].value == (float(probe.hidden[layer][t - 1, unit]) if t else 0.0)
    assert nodes["h"].fill.name() == expected_fill("h", nodes["h"].value).name()
    if probe.cell is not None:
        assert nodes["c"].value == float(probe.cell[layer][t, unit])
        assert nodes["c_prev"].value == (float(probe.cell[layer][t - 1, unit]) if t else 0.0)
        assert nodes["c"].number.toPlainText() == f"{probe.cell[layer][t, unit]:+.3f}".replace("-", "−")


def test_the_diagram_shows_the_probe_values_of_the_chosen_unit_and_time_step(qtbot, lstm_run):
    panel = fed(qtbot, lstm_run)
    probe = last_probe(lstm_run[1])
    assert set(panel.diagram.gate_boxes) == {"input", "forget", "cell", "output"}
    for unit, t in ((0, 0), (3, 5), (7, probe.T - 1)):
        panel.unit.setValue(unit)
        panel.set_time_cursor(t)
        panel.refresh(force=True)
        qtbot.waitUntil(lambda: not panel.diagram.animating, timeout=5_000)
        assert_shows(panel, probe, 0, unit, t)
    assert "t = " in panel.time_label.text()
    exported = panel.export_data()
    assert exported["forget"][0] == probe.gates[0]["forget"][probe.T - 1, 7]


def test_switching_kind_switches_the_diagram(qtbot, lstm_run, gru_padding_run, rnn_run):
    panel = fed(qtbot, lstm_run)
    assert tuple(panel.diagram.gate_boxes) == GATES["lstm"]  # torch.nn's order
    for run, kind in ((gru_padding_run, "gru"), (rnn_run, "rnn"), (lstm_run, "lstm")):
        info, records = run
        panel.reset(info)
        for record in records:
            panel.update_record(record)
        panel.refresh(force=True)
        assert panel.diagram.kind == kind
        assert tuple(panel.diagram.gate_boxes) == GATES[kind]
        assert ("c" in panel.diagram.nodes) == (kind == "lstm")
        probe = last_probe(records)
        assert_shows(panel, probe, panel.current_layer, panel.unit.value(), panel.t)


def test_layer_selector_for_stacked_cells(qtbot, rnn_run):
    panel = fed(qtbot, rnn_run)
    panel.show()
    assert panel.layer.isVisible() and panel.layer.count() == 2
    probe = last_probe(rnn_run[1])
    panel.unit.setValue(2)
    panel.set_time_cursor(3)
    for layer in (0, 1):
        panel.layer.setCurrentIndex(layer)
        panel.refresh(force=True)
        assert panel.diagram.nodes["h"].value == float(probe.hidden[layer][3, 2])
        assert panel.values == cell_values(probe, layer, 2, 3)


def test_arrow_keys_step_t_and_the_colours_ease_to_the_new_values(qtbot, lstm_run):
    panel = fed(qtbot, lstm_run)
    panel.show()
    qtbot.waitExposed(panel)
    probe = last_probe(lstm_run[1])
    panel.set_time_cursor(4)
    panel.refresh(force=True)
    qtbot.waitUntil(lambda: not panel.diagram.animating, timeout=5_000)
    panel.setFocus()
    qtbot.keyClick(panel, Qt.Key_Right)
    assert panel.t == 5
    assert panel.diagram.animating  # the step animates ...
    qtbot.waitUntil(lambda: not panel.diagram.animating, timeout=5_000)
    assert_shows(panel, probe, 0, panel.unit.value(), 5)  # ... and lands on the new values
    qtbot.keyClick(panel, Qt.Key_Left)
    qtbot.keyClick(panel, Qt.Key_Left)
    assert panel.t == 3
    qtbot.keyClick(panel, Qt.Key_End)
    assert panel.t == probe.T - 1
    qtbot.keyClick(panel, Qt.Key_Right)  # stays inside the probe
    assert panel.t == probe.T - 1


def test_hovering_a_gate_shows_all_units_and_clicking_a_bar_picks_a_unit(qtbot, lstm_run):
    panel = fed(qtbot, lstm_run)
    panel.show()
    qtbot.waitExposed(panel)
    probe = last_probe(lstm_run[1])
    panel.set_time_cursor(6)
    panel.refresh(force=True)
    view = panel.diagram
    box = view.gate_boxes["forget"]
    qtbot.mouseMove(view.viewport(), view.mapFromScene(box.scenePos()))
    qtbot.waitUntil(lambda: panel.vector_key == "forget", timeout=5_000)
    heights = panel.bars.opts["height"]
    np.testing.assert_array_equal(heights, probe.gates[0]["forget"][6])
    panel.show_vector("c_prev")
    np.testing.assert_array_equal(panel.bars.opts["height"], probe.cell[0][5])
    vb = panel.bars_plot.vb
    scene_point = vb.mapViewToScene(QPointF(4.0, 0.2))
    widget_point = panel.side.mapFromScene(scene_point)
    qtbot.mouseClick(panel.side.viewport(), Qt.LeftButton, pos=QPoint(int(widget_point.x()), int(widget_point.y())))
    qtbot.waitUntil(lambda: panel.unit.value() == 4, timeout=5_000)
    assert panel.diagram.gate_boxes["input"].value == float(probe.gates[0]["input"][6, 4])


def test_waits_for_the_probe_without_failing(qtbot, lstm_run):
    panel = CellPanel(LIGHT)
    qtbot.addWidget(panel)
    panel.reset(lstm_run[0])
    panel.refresh(force=True)
    assert "waiting" in panel.note.text()
    assert panel.export_data() == {}
    panel.apply_theme(LIGHT)


def test_in_the_window_the_new_panels_are_tabs_behind_the_gates_panel(qtbot, window):
    gates, cell = window.panels["gates"], window.panels["cell"]
    qtbot.waitUntil(lambda: cell.probe is not None, timeout=30_000)
    assert gates in window.visible_panels() and cell not in window.visible_panels()
    assert window.docks["cell"] in window.tabifiedDockWidgets(window.docks["gates"])
    window.docks["cell"].raise_()
    qtbot.waitUntil(lambda: cell in window.visible_panels(), timeout=5_000)
    window.transport.scrubber.setValue(5)  # the window's scrubber moves the diagram's t
    window.draw_frame()
    assert cell.t == 5 and cell.diagram.nodes["h"].value == float(cell.probe.hidden[0][5, cell.unit.value()])
