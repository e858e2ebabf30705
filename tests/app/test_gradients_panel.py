"""The gradients and spectrum panels across runs: lines that come back, stale data that goes,
the rates drawn and exported by name, the LSTM's cell-state row (issues 14, 15, 17)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from app.export.data import write_data
from app.training.messages import Unavailable
from tests.app.conftest import fed, tiny, train


@pytest.fixture(scope="module")
def rnn_last_step_run():
    """A tanh RNN on the adding problem: loss at the last step, so every rate is drawn."""
    return train(tiny(cell="rnn", hidden_size=8, seq_len=16), 4)


@pytest.fixture(scope="module")
def seq2seq_info():
    from app.training.engine import make_trainer, run_info

    return run_info(make_trainer(tiny(task="reverse", cell="gru", hidden_size=8)))


def _feed(panel, run):
    info, records = run
    panel.reset(info)
    for record in records:
        panel.update_record(record)
    panel.refresh()


def test_the_measured_line_comes_back_after_a_preset_switch(qtbot, lstm_run, rnn_last_step_run):
    """Issue 14.1: redraw() hid the curves while a new run had no record yet, and nothing
    showed them again; the y range stayed where the old run had put it."""
    panel = fed(qtbot, "gradients", lstm_run, show=True)
    panel.reset(rnn_last_step_run[0])  # the switch: no gradients yet
    panel.refresh(force=True)
    assert not panel.curves[0].isVisible() and panel.empty.isVisible()
    records = rnn_last_step_run[1]
    for record in records:
        panel.update_record(record)
    panel.refresh()
    assert panel.curves[0].isVisible() and not panel.empty.isVisible()
    norms = [r.gradients for r in records if getattr(r, "gradients", None) is not None][-1].norms[-1]
    low, high = panel.norm_plot.vb.viewRange()[1]  # log10 units
    assert low <= np.log10(norms.min()) and np.log10(norms.max()) <= high


def test_a_sequence_to_sequence_run_says_not_available_instead_of_the_last_run(qtbot, lstm_run, seq2seq_info):
    """Issue 14.2: the previous preset's step, factor and heatmap stayed on screen."""
    panel = fed(qtbot, "gradients", lstm_run, show=True)
    assert "step" in panel.note.text() and panel.history.image.image is not None
    panel.reset(seq2seq_info)
    panel.refresh(force=True)
    assert "not available for this task" in panel.empty.textItem.toPlainText()
    assert panel.empty.isVisible()
    assert not any(c.isVisible() for c in panel.curves)
    assert not any(item.isVisible() for item in (panel.measured, panel.lyapunov, panel.bound))
    assert panel.history.image.image is None and panel.export_data() == {}
    # Failed before (a real window, issue 14 walk): the h_t row, its colour bar and step labels
    # and the old run's struck-out legend entries stayed under the message.
    assert not panel.history_plot.isVisible() and not panel.cell_plot.isVisible()
    assert not panel.history.bar.isVisible() and len(panel.step_axis.steps) == 0
    assert not panel.norm_plot.legend.isVisible() and not panel.norm_plot.legend.items
    assert not any(line.isVisible() for line in panel.cursors)
    assert panel.history_plot.height() == 0 and panel.norm_plot.vb.height() > 100  # the message has the panel
    # The reason is said once (it read "not available for this task · gradients not available
    # at step 60: not computed for this task"), with the step it applies to.
    panel.update_record(Unavailable(step=7, instrument="gradients", reason="not computed for this task"))
    panel.refresh()
    assert panel.note.text() == "gradients not available at step 7: not computed for this task"
    # and the next sequence run gets its curves, heatmap and legend back
    _feed(panel, lstm_run)
    assert panel.history_plot.isVisible() and panel.curves[0].isVisible() and panel.history.image.image is not None
    assert panel.norm_plot.legend.items and panel.cell_plot.isVisible()


def test_rates_are_drawn_and_exported_by_name(qtbot, rnn_last_step_run, tmp_path):
    panel = fed(qtbot, "gradients", rnn_last_step_run, show=True)
    rec = panel.record
    assert panel.measured.isVisible() and panel.lyapunov.isVisible() and panel.bound.isVisible()
    text = panel.note.text()
    assert "Jacobian-product rate" in text and "Pascanu bound" in text and "mean-field estimate" in text
    assert "predicted" not in text
    data = panel.export_data()
    for name, value in (("measured_factor", rec.factor), ("lyapunov_rate", rec.lyapunov_rate),
                        ("pascanu_bound", rec.pascanu_bound), ("mean_field_estimate", rec.mean_field)):
        assert float(data[name]) == pytest.approx(value)
    written = json.loads(write_data(data, tmp_path / "gradients.json").read_text())
    assert written["pascanu_bound"] == pytest.approx(rec.pascanu_bound)
    # the bound is an upper bound on every step's factor: its line lies above the curve
    bound_line, curve = panel.bound.yData, panel.curves[0].yData
    assert np.all(bound_line[:-1] >= curve[:-1] * (1 - 1e-9))


def test_an_lstm_shows_its_cell_state_gradient_in_a_row_of_its_own(qtbot, lstm_run):
    panel = fed(qtbot, "gradients", lstm_run, show=True)
    assert panel.cell_curve.isVisible() and panel.cell_plot.isVisible()
    assert panel.cell_history.image.image is not None
    data = panel.export_data()
    np.testing.assert_array_equal(data["cell_norm_l0"], panel.record.cell_norms[0])
    assert data["history_log10_cell_norm"].shape == data["history_log10_norm"].shape
    legend = [label.text for _, label in panel.norm_plot.legend.items]
    assert any("∂L/∂c_t" in name for name in legend)


def test_truncated_bptt_draws_the_full_gradient_beside_the_truncated_one(qtbot, rnn_run):
    panel = fed(qtbot, "gradients", rnn_run, show=True)
    assert panel.full_curve.isVisible() and "full_bptt_norm_l1" in panel.export_data()
    assert any(item.isVisible() for item in panel.chunks._items)


def test_a_gru_hides_the_cell_row_and_the_spectrum_names_its_candidate_block(qtbot, gru_padding_run):
    grads = fed(qtbot, "gradients", gru_padding_run, show=True)
    assert not grads.cell_plot.isVisible() and not grads.cell_curve.isVisible()
    spectrum = fed(qtbot, "spectrum", gru_padding_run, show=True)
    assert "W<sub>hn</sub>" in spectrum.radius_plot.getAxis("left").labelText
    assert not spectrum.unit_line.isVisible()  # rho = 1 means nothing for a gated cell


def test_the_spectrum_of_a_tanh_rnn_says_explosion_is_possible_not_certain(qtbot, rnn_last_step_run):
    info, records = rnn_last_step_run
    spectrum = fed(qtbot, "spectrum", rnn_last_step_run, show=True)
    assert spectrum.unit_line.isVisible()
    assert "W<sub>hh</sub>" in spectrum.radius_plot.getAxis("left").labelText
    last = [r for r in records if getattr(r, "spectrum", None) is not None][-1].spectrum
    spectrum.update_record(dataclasses.replace(last, regime="explosion possible", bound=1.0))
    spectrum.refresh()
    assert "explosion possible, not certain" in spectrum.note.text()


def test_texts_that_teach_say_what_is_true(qtbot, lstm_run):
    """Issue 15.5 and 15.8: the saturation note, the length-penalty tooltip, Help's BPTT."""
    from app.panels import panel_class
    from app.panels.gates import SATURATION_NOTE
    from app.window.help import EQUATIONS_HTML

    gates = fed(qtbot, "gates", lstm_run)
    assert all(row.bars.toolTip() == SATURATION_NOTE for row in gates.rows)
    assert "σ' is near 0" in SATURATION_NOTE and "saturated open" in SATURATION_NOTE
    assert "passes almost no gradient" not in SATURATION_NOTE
    decoding = panel_class("decoding")()
    qtbot.addWidget(decoding)
    tip = decoding.penalty.toolTip()
    assert "len^α" in tip and "counting eos" in tip and "GNMT" in tip and "longer" in tip
    assert "∂L/∂c_t = ∂L/∂h_t * o_t * (1 - tanh²(c_t)) + f_(t+1) * ∂L/∂c_(t+1)" in EQUATIONS_HTML
    assert "1 for tanh and relu" in EQUATIONS_HTML and "Lyapunov" in EQUATIONS_HTML
