"""Decoding: the panel's tree, hypotheses and attention equal core.decoding on the live model."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from app.panels.decoding.panel import DecodingPanel
from app.theme import DARK, LIGHT
from app.training.controller import TrainingController
from core.config import Experiment
from core.decoding.tree import path_to
from tests.app.conftest import ask, tiny
from tests.app.remote import decode_reference

REVERSE = Experiment(task="reverse", cell="gru", attention="dot", hidden_size=16, embed_size=8, seq_len=8,
                     batch_size=16, lr=0.01, steps=100000)


@pytest.fixture
def decoding(qtbot):
    """(controller, panel): a real training process and the panel wired as the window wires it."""
    controller = TrainingController()
    panel = DecodingPanel(LIGHT)
    qtbot.addWidget(panel)
    panel.resize(1600, 900)
    controller.built.connect(panel.reset)
    controller.records_ready.connect(lambda records: [panel.update_record(r) for r in records])
    panel.connect_engine(controller)
    yield controller, panel
    assert controller.shutdown(timeout=10)


def build(qtbot, controller, panel, experiment=REVERSE, steps=15) -> None:
    with qtbot.waitSignal(controller.built, timeout=60_000):
        controller.build(experiment)
    controller.step(steps, {"probe"})
    qtbot.waitUntil(lambda: panel._model_step == steps, timeout=60_000)


def test_run_shows_the_core_tree_and_best_hypothesis(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel)
    assert panel.input.text() == "recurren"  # the probe's source text (seq_len 8)
    panel.beam.setValue(3)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    whole, _, _ = ask(qtbot, controller, partial(decode_reference, text="recurren", beam=3))
    assert panel.tree.count == len(whole.tree) == len(panel.view.result.tree)
    assert [(n.parent, n.token, n.status) for n in panel.view.result.tree] == \
        [(n.parent, n.token, n.status) for n in whole.tree]
    best = panel.view.result.hypotheses[0]
    assert best.ids == whole.hypotheses[0].tokens and best.score == pytest.approx(whole.hypotheses[0].score)
    assert panel.table.item(1, 2).text().replace("−", "-") == f"{whole.hypotheses[0].score:+.3f}"
    assert panel.table.item(0, 0).text() == "greedy"
    x, y = panel.tree.nodes.getData()
    assert len(x) == len(whole.tree)
    assert panel.selected == whole.hypotheses[0].node_id  # the best is selected first


def test_next_expansion_adds_exactly_the_nodes_of_one_step(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel)
    panel.beam.setValue(4)
    panel.next_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    _, expansions, _ = ask(qtbot, controller, partial(decode_reference, text="recurren", beam=4))
    assert panel.shown_steps == 1 and panel.tree.count == 1 + len(expansions[0])
    for k in range(1, len(expansions)):
        before = panel.tree.count
        panel.next_button.click()
        assert panel.shown_steps == k + 1
        added = panel.view.result.tree[before:panel.tree.count]
        assert [(n.id, n.parent, n.token, n.status) for n in added] == \
            [(n.id, n.parent, n.token, n.status) for n in expansions[k]]
    assert not panel.next_button.isEnabled()  # the search is done
    old = panel.view
    panel.beam.setValue(2)  # a new setting: Next expansion starts a new decode from step 1
    assert panel.next_button.isEnabled()
    panel.next_button.click()
    qtbot.waitUntil(lambda: panel.view is not old, timeout=60_000)
    assert panel.shown_steps == 1 and panel.view.request.beam == 2


def test_selecting_a_hypothesis_shows_its_attention_rows(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel)
    panel.input.setText("recur")
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    whole, _, attention = ask(qtbot, controller, partial(decode_reference, text="recur", beam=4))
    for rank in range(len(whole.hypotheses)):
        panel.table.cellClicked.emit(rank + 1, 1)  # as a click on the row
        assert panel.selected == whole.hypotheses[rank].node_id
        np.testing.assert_allclose(panel.attention.weights, attention[rank], atol=1e-6)
        assert panel.attention.selected_row == len(whole.hypotheses[rank].tokens) - 1  # its last token
        assert panel.attention.source == tuple("recur")
    # a node on a hypothesis's path selects the best hypothesis through it, its token row outlined
    node = path_to(whole.tree, whole.hypotheses[-1].node_id)[2]
    through = [r for r, h in enumerate(whole.hypotheses) if node in path_to(whole.tree, h.node_id)]
    panel.select_node(node)
    assert panel.selected == whole.hypotheses[through[0]].node_id
    assert panel.attention.selected_row == 1
    np.testing.assert_allclose(panel.attention.weights, attention[through[0]], atol=1e-6)
    panel.table.cellClicked.emit(0, 1)  # greedy
    assert panel.selected == -1
    np.testing.assert_allclose(panel.attention.weights, panel.view.greedy_attention)


def test_clicking_a_finished_node_in_the_tree_selects_it(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel)
    panel.show()
    qtbot.waitExposed(panel)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    last = panel.view.result.hypotheses[-1].node_id
    x, y = panel.view.positions[last]
    vb = panel.tree.plot.vb
    point = panel.tree.mapFromScene(vb.mapViewToScene(QPointF(float(x), float(y))))
    with qtbot.waitSignal(panel.tree.node_clicked, timeout=5_000):
        qtbot.mouseClick(panel.tree.viewport(), Qt.LeftButton, pos=point)
    assert panel.selected == last
    np.testing.assert_allclose(panel.attention.weights, panel.view.attention[last])


def test_bad_inputs_show_a_notice_and_never_crash(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel, steps=2)
    for text, expected in (("   ", "empty"), ("ab3#", "unknown"), ("abcdefghijkl", "truncated")):
        panel.input.setText(text)
        panel.view = None
        panel.run_button.click()
        qtbot.waitUntil(lambda e=expected: e in panel.notice.text(), timeout=60_000)
    assert panel.view is not None and panel.view.result.source == "abcdefgh"


def test_other_tasks_get_an_explanation_and_no_controls(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel, experiment=tiny(), steps=1)
    assert "Decoding needs a translation preset" in panel.tree_message.textItem.toPlainText()
    assert "dates-attention" in panel.tree_message.textItem.toPlainText()
    assert not panel.run_button.isEnabled() and not panel.input.isEnabled()
    panel.run_all()  # does nothing, says nothing wrong
    assert panel.view is None


def test_a_model_without_attention_says_so(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel, experiment=REVERSE.replace(attention="none"), steps=2)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    assert panel.attention.weights.size == 0
    assert "no attention" in panel.attention.message.textItem.toPlainText()
    panel.apply_theme(DARK)  # restyles in place, the tree redrawn
    assert panel.tree.theme is DARK and panel.tree.count == len(panel.view.result.tree)


def test_hundreds_of_nodes_step_without_lag(qtbot, decoding):
    controller, panel = decoding
    build(qtbot, controller, panel, steps=1)
    panel.beam.setValue(32)
    panel.max_len.setValue(20)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.view is not None, timeout=60_000)
    assert len(panel.view.result.tree) > 500
    start = time.perf_counter()
    for k in range(1, 21):
        panel.tree.show_steps(k)
    per_step = (time.perf_counter() - start) / 20
    assert per_step < 0.25, per_step  # generous: shared CI cores; typically a few ms


def test_the_tree_legend_follows_the_theme(qtbot):
    """Its names are redrawn in the new theme's colour (pyqtgraph's own legend keeps the old one)."""
    from PySide6.QtGui import QTextCursor

    from app.panels.decoding.tree_view import BeamTreePlot

    tree = BeamTreePlot(LIGHT)
    qtbot.addWidget(tree)
    tree.apply_theme(DARK)
    for _, label in tree.plot.legend.items:
        cursor = QTextCursor(label.item.document())
        cursor.setPosition(1)
        assert cursor.charFormat().foreground().color().name().lower() == DARK.foreground.lower()
